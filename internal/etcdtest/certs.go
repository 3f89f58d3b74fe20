package etcdtest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/tempalias/tempalias/internal/testcert"
)

// makeCerts writes a CA, a server certificate for 127.0.0.1 (which the
// members also present to each other as clients) and a client
// certificate, both signed by the CA, into dir.
func makeCerts(t testing.TB, dir string, f *TLSFiles) {
	t.Helper()
	ca := testcert.NewCA(t)
	f.CA = writePEM(t, dir, "ca.pem", ca.CertPEM)
	srv := ca.Issue(t, testcert.Peer, "etcd")
	f.serverCert = writePEM(t, dir, "server.pem", srv.CertPEM)
	f.serverKey = writePEM(t, dir, "server-key.pem", srv.KeyPEM)
	cli := ca.Issue(t, testcert.Client, "tempalias")
	f.ClientCert = writePEM(t, dir, "client.pem", cli.CertPEM)
	f.ClientKey = writePEM(t, dir, "client-key.pem", cli.KeyPEM)
}

// Config is a client TLS configuration with the test's client
// certificate and CA.
func (f *TLSFiles) Config(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func writePEM(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return p
}
