package main

import "testing"

// TestPrintableReply: a text reply is printed as is, a binary one (a DNS
// answer to `lab probe --protocol UDP --port 53`) quoted with escapes.
func TestPrintableReply(t *testing.T) {
	for in, want := range map[string]string{
		"ok shop/db-0":        "ok shop/db-0",
		"":                    "",
		"he\x81\x80\x00\x01$": `"he\x81\x80\x00\x01$"`,
	} {
		if got := printableReply(in); got != want {
			t.Errorf("printableReply(%q) = %s, want %s", in, got, want)
		}
	}
}
