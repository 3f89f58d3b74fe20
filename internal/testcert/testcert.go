// Package testcert makes certificates for tests that run TLS on loopback:
// a self-signed server certificate for 127.0.0.1 and localhost (plus any
// names given) and the pool a client needs to trust it, or a test CA and
// the server and client certificates it signs, for mutual TLS.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Cert is a certificate and its key.
type Cert struct {
	TLS  tls.Certificate
	X509 *x509.Certificate
	// CertPEM and KeyPEM are the same certificate and key as files hold them.
	CertPEM, KeyPEM []byte
}

// Pool is a certificate pool that trusts c (and, for a CA, what it
// issued).
func (c Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.X509)
	return p
}

// New makes a self-signed server certificate with the given serial
// number, valid for an hour either side of now, for 127.0.0.1, localhost
// and names.
func New(t testing.TB, serial int64, names ...string) Cert {
	t.Helper()
	return sign(t, &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "tempalias test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              append([]string{"localhost"}, names...),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil)
}

// NewCA makes a certificate authority for Issue, valid for an hour either
// side of now.
func NewCA(t testing.TB) Cert {
	t.Helper()
	return sign(t, &x509.Certificate{
		SerialNumber:          big.NewInt(serials.Add(1)),
		Subject:               pkix.Name{CommonName: "tempalias test CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil)
}

// Use is what an issued certificate may authenticate.
type Use []x509.ExtKeyUsage

var (
	// Server is a server certificate for 127.0.0.1 and localhost.
	Server = Use{x509.ExtKeyUsageServerAuth}
	// Client is a client certificate.
	Client = Use{x509.ExtKeyUsageClientAuth}
	// Peer is both, as cluster members that dial each other need.
	Peer = Use{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

// Issue makes a certificate for use named cn, signed by ca, valid for an
// hour either side of now; one that may serve is for 127.0.0.1 and
// localhost.
func (ca Cert) Issue(t testing.TB, use Use, cn string) Cert {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  use,
	}
	for _, u := range use {
		if u == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
	}
	return sign(t, tmpl, &ca)
}

// serials numbers the CA's certificates (New's callers pick their own).
var serials atomic.Int64

func init() { serials.Store(1 << 20) }

// sign signs tmpl with parent's key, or with its own when parent is nil.
func sign(t testing.TB, tmpl *x509.Certificate, parent *Cert) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	signer, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signer, signerKey = parent.X509, parent.TLS.PrivateKey.(crypto.Signer)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Cert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		X509:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
}
