package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
)

// TestControllerUITLS: with controller.uiTLSCert and uiTLSKey the page is
// served over TLS only (a plain HTTP request gets no page), with the
// page's security headers; a certificate that cannot be loaded stops the
// controller at its start, naming both settings and flags.
func TestControllerUITLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, cert, key)
	a := &app{log: slog.New(slog.DiscardHandler)}
	rc := &rest.Config{Host: "https://127.0.0.1:1"} // no API server: the page itself needs none

	_, err := listenUI(ctrlkube.Config{UIListen: "127.0.0.1:0", UITLSCert: key, UITLSKey: key}, rc, a)
	if err == nil || !strings.Contains(err.Error(), "controller.uiTLSCert (--ui-tls-cert), controller.uiTLSKey (--ui-tls-key): ") {
		t.Fatalf("a key as the certificate: %v", err)
	}

	ui, err := listenUI(ctrlkube.Config{UIListen: "127.0.0.1:0", UITLSCert: cert, UITLSKey: key}, rc, a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ui.run(ctx, a)
	addr := ui.l.Addr().String()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test's self-signed certificate
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<html") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("the page over TLS: %d, CSP %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), len(body))
	}
	if resp, err := c.Get("https://" + addr + "/v1/status"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the API without a token: %v %v, want 401", resp, err)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("the page answered plain HTTP on its TLS listener")
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key (PEM).
func writeSelfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nanoseg-controller"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}
