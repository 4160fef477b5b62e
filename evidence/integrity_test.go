package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

func testKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sampleBundle() *Bundle {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Bundle{
		Meta:      Meta{GeneratedAt: at, Host: "h", Agent: "dev", Window: Duration(time.Hour), WindowStart: at.Add(-time.Hour), RequestedBy: "root"},
		Inventory: []Workload{{Key: "shop/api", Namespace: "shop", Name: "api", Identity: map[string]string{"app": "api"}, Endpoints: []Endpoint{{Netns: "n-api", Addrs: []string{"198.18.0.2"}, Ports: []model.ContainerPort{{Name: "http", Port: 8080, Protocol: "TCP"}}}}}},
		Policies: Policies{History: []model.Promotion{{Seq: 1, At: at, Who: "root", Workload: "shop/api", Action: "promote", ToMode: "enforce", ToRevision: 1, Hash: "ab"}},
			Chain: ChainCheck{Events: 1, Verified: true}},
		Denied: Denied{Events: []model.VerdictEvent{{At: at, Verdict: "deny", Source: "shop/intruder", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432, RuleID: "x"}}},
		Probes: &ProbeRun{Probed: 1, Results: []Probe{{Source: "shop/api", Destination: "shop/db", Outcome: "connected", Match: true}}},
	}
}

// writeBundle renders, signs and writes a bundle into a new directory and
// returns the directory and the manifest's SHA-256.
func writeBundle(t *testing.T, key ed25519.PrivateKey, seq uint64, prev *Link) (string, string) {
	t.Helper()
	files, err := Files(sampleBundle())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Sign(files, Manifest{CreatedAt: time.Now().UTC(), Sequence: seq, Previous: prev}, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := WriteDir(dir, files); err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

func wantFile(t *testing.T, err error, file string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
		t.Fatalf("got %v, want a VerifyError naming %s", err, file)
	}
	if ve.File != file {
		t.Fatalf("error names %q, want %q (%v)", ve.File, file, err)
	}
}

func TestVerifyAcceptsIntactBundle(t *testing.T) {
	key := testKey(t)
	dir, sum := writeBundle(t, key, 1, nil)
	res, err := Verify(dir, VerifyOptions{TrustedKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Trusted || res.ManifestSHA256 != sum || res.Files != len(res.Manifest.Files) {
		t.Fatalf("result %+v", res)
	}
	for _, f := range []string{"report.html", "bundle.json", "inventory.csv", "history.json", "probes.csv", PublicKeyFile} {
		found := false
		for _, e := range res.Manifest.Files {
			found = found || e.Path == f
		}
		if !found {
			t.Errorf("manifest does not list %s", f)
		}
	}
}

// Changing any single byte of any file makes Verify fail and name that
// file (the manifest and its signature name the signature).
func TestVerifyNamesEveryChangedFile(t *testing.T) {
	key := testKey(t)
	dir, _ := writeBundle(t, key, 1, nil)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []int{0, len(orig) / 2, len(orig) - 1} {
			changed := bytes.Clone(orig)
			changed[at] ^= 0x01
			if err := os.WriteFile(p, changed, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Verify(dir, VerifyOptions{})
			want := name
			if name == ManifestFile {
				// Either it no longer parses (manifest.json) or the
				// signature no longer matches it (manifest.sig).
				var ve *VerifyError
				if errors.As(err, &ve) && ve.File == SignatureFile {
					want = SignatureFile
				}
			}
			wantFile(t, err, want)
		}
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Verify(dir, VerifyOptions{}); err != nil {
		t.Fatalf("restored bundle: %v", err)
	}
}

func TestVerifyRemovedAndAddedFiles(t *testing.T) {
	key := testKey(t)
	dir, _ := writeBundle(t, key, 1, nil)
	if err := os.Remove(filepath.Join(dir, "denied.csv")); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(dir, VerifyOptions{})
	wantFile(t, err, "denied.csv")

	dir, _ = writeBundle(t, key, 1, nil)
	if err := os.WriteFile(filepath.Join(dir, "zz-extra.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(dir, VerifyOptions{})
	wantFile(t, err, "zz-extra.txt")

	dir, _ = writeBundle(t, key, 1, nil)
	if err := os.Remove(filepath.Join(dir, SignatureFile)); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(dir, VerifyOptions{})
	wantFile(t, err, SignatureFile)
}

// Re-signing an edited bundle with another key passes the self-contained
// check only if the manifest names the new key, and then fails against the
// trusted key and against the previous bundle's key.
func TestVerifyRefusesOtherKey(t *testing.T) {
	key, other := testKey(t), testKey(t)
	dir, _ := writeBundle(t, key, 1, nil)
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	// Signature by another key over the unchanged manifest.
	resign := func(m []byte) {
		sig := ed25519.Sign(other, m)
		if err := os.WriteFile(filepath.Join(dir, SignatureFile), []byte(b64(sig)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resign(raw)
	_, err = Verify(dir, VerifyOptions{})
	wantFile(t, err, SignatureFile)

	// A forger re-signs everything with another key: trusted key refuses it.
	prevDir, prevSum := writeBundle(t, key, 1, nil)
	files, err := Files(sampleBundle())
	if err != nil {
		t.Fatal(err)
	}
	files["denied.csv"] = []byte("verdict\n")
	if _, err := Sign(files, Manifest{Sequence: 2, Previous: &Link{Sequence: 1, ManifestSHA256: prevSum}}, other); err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged")
	if err := WriteDir(forged, files); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(forged, VerifyOptions{}); err != nil {
		t.Fatalf("self-consistent forgery should pass without a trusted key: %v", err)
	}
	_, err = Verify(forged, VerifyOptions{TrustedKey: key.Public().(ed25519.PublicKey)})
	wantFile(t, err, SignatureFile)
	_, err = Verify(forged, VerifyOptions{PreviousDir: prevDir})
	wantFile(t, err, SignatureFile)
}

func TestVerifyChainLink(t *testing.T) {
	key := testKey(t)
	d1, s1 := writeBundle(t, key, 1, nil)
	d2, s2 := writeBundle(t, key, 2, &Link{Sequence: 1, ManifestSHA256: s1})
	d3, _ := writeBundle(t, key, 3, &Link{Sequence: 2, ManifestSHA256: s2})
	if res, err := Verify(d2, VerifyOptions{PreviousDir: d1}); err != nil || !res.Linked {
		t.Fatalf("linked bundle: %v %+v", err, res)
	}
	// A gap: bundle 3 checked against bundle 1.
	_, err := Verify(d3, VerifyOptions{PreviousDir: d1})
	wantFile(t, err, ManifestFile)
	// An edit in the previous bundle.
	if err := os.WriteFile(filepath.Join(d1, "inventory.csv"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(d2, VerifyOptions{PreviousDir: d1})
	wantFile(t, err, "previous bundle inventory.csv")
	// The first bundle has no link.
	d0, _ := writeBundle(t, key, 1, nil)
	_, err = Verify(d0, VerifyOptions{PreviousDir: d2})
	wantFile(t, err, ManifestFile)
}

func TestVerifyHistoryHook(t *testing.T) {
	key := testKey(t)
	dir, _ := writeBundle(t, key, 1, nil)
	_, err := Verify(dir, VerifyOptions{CheckHistory: func(raw []byte) error {
		var ps []model.Promotion
		if err := json.Unmarshal(raw, &ps); err != nil {
			return err
		}
		return errors.New("chain broken at 1")
	}})
	wantFile(t, err, "history.json")
}

func TestTarGzRoundTrip(t *testing.T) {
	key := testKey(t)
	files, err := Files(sampleBundle())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(files, Manifest{Sequence: 1}, key); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := TarGz(files, "evidence", at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := TarGz(files, "evidence", at)
	if !bytes.Equal(a, b) {
		t.Error("the same files give different archives")
	}
	back, err := UntarGz(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "x")
	if err := WriteDir(dir, back); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dir, back); err == nil {
		t.Error("WriteDir overwrote an existing bundle")
	}
}

func TestKeyFileCreatedPrivate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys", "signing.key")
	k1, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v %v", st.Mode(), err)
	}
	k2, err := LoadOrCreateKey(p)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reload: %v", err)
	}
	pub, err := ReadPublicKey(p + ".pub")
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatalf("public key: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
}

func TestChainHeadRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "chain-head.json")
	if h, err := ReadChainHead(p); err != nil || h != nil {
		t.Fatalf("missing head: %v %v", h, err)
	}
	want := ChainHead{Sequence: 3, ManifestSHA256: "abc", CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := WriteChainHead(p, want); err != nil {
		t.Fatal(err)
	}
	h, err := ReadChainHead(p)
	if err != nil || *h != want {
		t.Fatalf("got %+v %v", h, err)
	}
}

func TestWindowCounters(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snaps := []Snapshot{
		{At: t0, Counters: map[string]map[string]Count{"db": {"r1": {Packets: 1, Bytes: 60}}}},
		{At: t0.Add(10 * time.Minute), Counters: map[string]map[string]Count{"db": {"r1": {Packets: 5, Bytes: 300}, "r2": {Packets: 9, Bytes: 9}}}},
	}
	now := map[string]map[string]Count{"db": {"r1": {Packets: 25, Bytes: 1500}, "r2": {Packets: 2, Bytes: 2}, "r3": {}}}
	rules, unused := WindowCounters(now, snaps, t0.Add(5*time.Minute), func(string) string { return "shop/db" })
	if len(rules) != 3 {
		t.Fatalf("rules %+v", rules)
	}
	if r := rules[0]; r.WindowPackets != 20 || r.WindowBytes != 1200 || r.Baseline != "snapshot" || !r.CountedFrom.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("r1 %+v", r)
	}
	if r := rules[1]; r.Baseline != "reset" || r.WindowPackets != 2 {
		t.Errorf("r2 %+v", r)
	}
	if r := rules[2]; r.Baseline != "programmed" || len(unused) != 1 || unused[0].RuleID != "r3" {
		t.Errorf("r3 %+v unused %+v", r, unused)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
