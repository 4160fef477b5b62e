package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// TestClientCertificate: a browser with a client certificate the CA
// signed is an operator; it may open a session with an empty login
// (named after the certificate in recorded promotions), and a
// certificate, ambient like a cookie, does not let another origin change
// state.
func TestClientCertificate(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nanoseg test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	ckey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	cDER, err := x509.CreateCertificate(rand.Reader, cTmpl, ca, &ckey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	srv := server.New(svc, server.Config{UI: page}, nil)
	ts := httptest.NewUnstartedServer(srv.TCPHandler())
	ts.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	ts.StartTLS()
	defer ts.Close()
	b := newBrowser(t, ts)
	tr := b.c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cDER}, PrivateKey: ckey}}
	b.c.Transport = tr

	anon := newBrowser(t, ts)
	if code, _, _ := anon.do("GET", "/v1/history", ""); code != http.StatusUnauthorized {
		t.Errorf("no certificate: %d, want 401", code)
	}
	if code, body, _ := b.do("GET", "/v1/history", ""); code != http.StatusOK {
		t.Errorf("with the certificate: %d %s", code, body)
	}
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
	if code, body, _ := b.do("POST", "/v1/policies", pol, "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Errorf("certificate request from another origin: %d %s, want 403", code, body)
	}
	if code, body, _ := b.do("POST", "/v1/policies", pol); code != http.StatusOK {
		t.Fatalf("apply with the certificate: %d %s", code, body)
	}
	info := b.login("")
	if info["role"] != "operator" {
		t.Errorf("certificate login: %v", info)
	}
	// The session alone (a fresh connection would carry the certificate
	// too; the cookie then is not what authenticates): drop it.
	jar := b.c.Jar
	plain := newBrowser(t, ts)
	plain.c.Jar = jar
	if code, _, _ := plain.do("POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"x"}`); code != http.StatusForbidden {
		t.Errorf("session without CSRF token: %d, want 403", code)
	}
	if code, body, _ := plain.do("POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"x"}`, server.HeaderCSRF, b.csrf); code != http.StatusOK {
		t.Fatalf("promote in the certificate's session: %d %s", code, body)
	}
	if h, _ := mem.History("shop/db"); len(h) != 1 || !strings.HasPrefix(h[0].Who, "web UI session of the cert:alice from ") {
		t.Errorf("recorded %+v, want the certificate's session", h)
	}
}
