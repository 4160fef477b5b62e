package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Names of the controller's TLS bootstrap objects (in its namespace).
const (
	// ServiceName is the controller's Service (manifests/controller/service.yaml).
	ServiceName = "nanoseg-controller"
	// TLSSecretName holds the self-signed CA (ca.crt, ca.key) and the
	// serving certificate (tls.crt, tls.key).
	TLSSecretName = "nanoseg-controller-tls"
	// CAConfigMapName publishes the CA (key CAKey) for the node agents.
	CAConfigMapName = "nanoseg-controller-ca"
	// CAKey is the key of the CA certificate (PEM) in the ConfigMap and
	// the Secret.
	CAKey    = "ca.crt"
	caKeyKey = "ca.key"
)

// Lifetimes of what EnsureServingCert issues; a serving certificate with
// less than renewBefore left is issued again from the same CA.
const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	servingLifetime = 365 * 24 * time.Hour
	renewBefore     = 30 * 24 * time.Hour
)

// CertOptions add names to the serving certificate.
type CertOptions struct {
	// IPs are IP SANs besides the DNS names of the Service (tests serve
	// on 127.0.0.1).
	IPs []net.IP
	// DNSNames are DNS SANs besides the Service's.
	DNSNames []string
}

// Serving is the controller's serving certificate and the CA agents
// verify it with.
type Serving struct {
	Certificate tls.Certificate
	CAPEM       []byte
}

// TLSConfig returns a server TLS configuration with the certificate.
func (s *Serving) TLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.Certificate}, MinVersion: tls.VersionTLS12}
}

// EnsureServingCert returns the controller's serving certificate from
// Secret TLSSecretName of namespace, creating it when missing (a
// self-signed CA and a certificate for nanoseg-controller.<ns>.svc, its
// short forms and the names of opts), issuing the certificate again from
// the same CA when it lacks a name of opts or expires within 30 days,
// and publishes the CA in ConfigMap CAConfigMapName. Two replicas racing
// end with the same Secret (the loser of a create or update reads the
// winner's). RBAC: create secrets and configmaps in namespace; get and
// update the two by name.
func EnsureServingCert(ctx context.Context, client kubernetes.Interface, namespace string, opts CertOptions) (*Serving, error) {
	dns := append([]string{ServiceName, ServiceName + "." + namespace, ServiceName + "." + namespace + ".svc",
		ServiceName + "." + namespace + ".svc.cluster.local"}, opts.DNSNames...)
	secrets := client.CoreV1().Secrets(namespace)
	var sec *corev1.Secret
	for attempt := 0; ; attempt++ {
		if attempt == 4 {
			return nil, fmt.Errorf("secret %s/%s: kept changing while being written", namespace, TLSSecretName)
		}
		cur, err := secrets.Get(ctx, TLSSecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			data, err := newCertSecretData(nil, nil, dns, opts.IPs)
			if err != nil {
				return nil, err
			}
			cur = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "nanoseg", "app.kubernetes.io/component": "controller"}},
				Type: corev1.SecretTypeTLS, Data: data}
			if sec, err = secrets.Create(ctx, cur, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
				continue
			} else if err != nil {
				return nil, fmt.Errorf("create secret %s/%s: %w", namespace, TLSSecretName, err)
			}
			break
		} else if err != nil {
			return nil, fmt.Errorf("get secret %s/%s: %w", namespace, TLSSecretName, err)
		}
		if servingOK(cur.Data, dns, opts.IPs) {
			sec = cur
			break
		}
		caCert, caKey, err := parseCA(cur.Data)
		if err != nil {
			return nil, fmt.Errorf("secret %s/%s: %w", namespace, TLSSecretName, err)
		}
		data, err := newCertSecretData(caCert, caKey, dns, opts.IPs)
		if err != nil {
			return nil, err
		}
		cur = cur.DeepCopy()
		cur.Data = data
		if sec, err = secrets.Update(ctx, cur, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("update secret %s/%s: %w", namespace, TLSSecretName, err)
		}
		break
	}
	cert, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, TLSSecretName, err)
	}
	caPEM := sec.Data[CAKey]
	if err := publishCA(ctx, client, namespace, caPEM); err != nil {
		return nil, err
	}
	return &Serving{Certificate: cert, CAPEM: caPEM}, nil
}

// publishCA makes ConfigMap CAConfigMapName hold caPEM.
func publishCA(ctx context.Context, client kubernetes.Interface, namespace string, caPEM []byte) error {
	cms := client.CoreV1().ConfigMaps(namespace)
	for range 4 {
		cm, err := cms.Get(ctx, CAConfigMapName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: CAConfigMapName, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "nanoseg", "app.kubernetes.io/component": "controller"}},
				Data: map[string]string{CAKey: string(caPEM)}}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("create configmap %s/%s: %w", namespace, CAConfigMapName, err)
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("get configmap %s/%s: %w", namespace, CAConfigMapName, err)
		}
		if cm.Data[CAKey] == string(caPEM) {
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[CAKey] = string(caPEM)
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("update configmap %s/%s: %w", namespace, CAConfigMapName, err)
		}
		return nil
	}
	return fmt.Errorf("configmap %s/%s: kept changing while being written", namespace, CAConfigMapName)
}

// servingOK reports whether data holds a CA and a serving certificate it
// signed that names every name and IP and is valid for renewBefore more.
func servingOK(data map[string][]byte, dns []string, ips []net.IP) bool {
	caCert, _, err := parseCA(data)
	if err != nil {
		return false
	}
	if _, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]); err != nil {
		return false
	}
	block, _ := pem.Decode(data[corev1.TLSCertKey])
	if block == nil {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || c.CheckSignatureFrom(caCert) != nil || time.Until(c.NotAfter) < renewBefore {
		return false
	}
	for _, d := range dns {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func parseCA(data map[string][]byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(data[CAKey])
	kb, _ := pem.Decode(data[caKeyKey])
	if cb == nil || kb == nil {
		return nil, nil, errors.New("no CA certificate and key (ca.crt, ca.key): delete the Secret to have a new CA made")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.crt: %w", err)
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.key: %w", err)
	}
	return c, k, nil
}

// newCertSecretData issues a serving certificate for dns and ips from the
// CA (a new CA when caCert is nil) and returns the Secret's data.
func newCertSecretData(caCert *x509.Certificate, caKey *ecdsa.PrivateKey, dns []string, ips []net.IP) (map[string][]byte, error) {
	now := time.Now()
	if caCert == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "nanoseg-controller-ca"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(caLifetime), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		if caCert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		caKey = key
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: dns[0]}, DNSNames: dns, IPAddresses: ips,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(servingLifetime), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		CAKey:                   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		caKeyKey:                pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
	}, nil
}

func serial() *big.Int {
	n, _ := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// CAFile returns SenderConfig.CA reading the PEM file at path.
func CAFile(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("controller CA file: %w", err)
		}
		return b, nil
	}
}

// CAConfigMap returns SenderConfig.CA reading key CAKey of ConfigMap
// namespace/name through client (RBAC: get on that ConfigMap).
func CAConfigMap(client kubernetes.Interface, namespace, name string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("controller CA from configmap %s/%s: %w", namespace, name, err)
		}
		pemData := []byte(cm.Data[CAKey])
		if len(bytes.TrimSpace(pemData)) == 0 {
			return nil, fmt.Errorf("controller CA from configmap %s/%s: no %s", namespace, name, CAKey)
		}
		return pemData, nil
	}
}
