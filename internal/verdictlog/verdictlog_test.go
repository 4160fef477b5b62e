package verdictlog

import (
	"errors"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

func TestFormatParse(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen)
	for _, v := range model.Verdicts {
		for _, id := range []string{"r", "shop/web", "np/shop/db-allow/ingress-0", long} {
			p := Format(v, id)
			if len(p) > 127 {
				t.Errorf("Format(%s, %d-byte id) is %d bytes, more than 127", v, len(id), len(p))
			}
			for _, tail := range []string{"", "\x00", " "} {
				gv, gid, err := Parse(p + tail)
				if err != nil || gv != v || gid != id {
					t.Errorf("Parse(Format(%s, %q)+%q) = %q, %q, %v", v, id, tail, gv, gid, err)
				}
			}
		}
	}
	if got := Format(model.VerdictDeny, "shop/web"); got != "nanoseg:deny:shop/web" {
		t.Errorf("Format = %q", got)
	}
}

func TestParseLegacyWords(t *testing.T) {
	for word, want := range map[string]model.Verdict{"observe": model.VerdictObserved, "observed": model.VerdictObserved,
		"allow": model.VerdictAllow, "audit-deny": model.VerdictAuditDeny, "deny": model.VerdictDeny} {
		v, id, err := Parse("nanoseg:" + word + ":shop/db")
		if err != nil || v != want || id != "shop/db" {
			t.Errorf("Parse(%s) = %q, %q, %v; want %q", word, v, id, err, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{"other:deny:x", "nanoseg", "nanoseg:deny", "nanoseg:maybe:x", "nanoseg:deny:",
		"nanoseg:deny:a:b", "nanoseg:deny:a b", "nanoseg:deny:é", "nanoseg:deny:" + strings.Repeat("a", MaxIDLen+1)} {
		_, _, err := Parse(bad)
		switch {
		case err == nil:
			t.Errorf("Parse(%q) succeeded", bad)
		case strings.HasPrefix(bad, Tag+":") && !errors.Is(err, ErrMalformed):
			t.Errorf("Parse(%q) = %v, want ErrMalformed", bad, err)
		case !strings.HasPrefix(bad, Tag+":") && !errors.Is(err, ErrNotNanoseg):
			t.Errorf("Parse(%q) = %v, want ErrNotNanoseg", bad, err)
		}
	}
}

func TestValidID(t *testing.T) {
	alphabet := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-"
	if err := ValidID(alphabet); err != nil {
		t.Errorf("ValidID(alphabet) = %v", err)
	}
	for c := 0; c < 256; c++ {
		err := ValidID(string([]byte{byte(c)}))
		if want := strings.IndexByte(alphabet, byte(c)) >= 0; (err == nil) != want {
			t.Errorf("ValidID(%q) = %v", byte(c), err)
		}
	}
}

// FuzzParse checks that Parse never panics, that what it accepts obeys the
// grammar, and that Format gives back the canonical prefix.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"nanoseg:deny:shop/db", "nanoseg:observe:x\x00", "nanoseg:audit-deny:np/a/b/c ",
		"nanoseg:allow:", "nanoseg::x", "x:deny:y", "nanoseg:deny:a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, id, err := Parse(s)
		if err != nil {
			return
		}
		if ValidID(id) != nil {
			t.Fatalf("Parse(%q) accepted id %q", s, id)
		}
		p := Format(v, id)
		v2, id2, err := Parse(p)
		if err != nil || v2 != v || id2 != id {
			t.Fatalf("Parse(Format(Parse(%q))) = %q, %q, %v", s, v2, id2, err)
		}
	})
}
