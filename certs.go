package main

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certs holds the TLS certificate shared by HTTPS and STARTTLS. A reload
// swaps it atomically: handshakes already done keep the old one, new
// handshakes get the new one, and no connection is dropped.
type certs struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCerts(certFile, keyFile string) (*certs, error) {
	c := &certs{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the files again; on error the current certificate stays.
func (c *certs) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	c.cur.Store(&cert)
	return nil
}

// config is a server TLS configuration that always uses the current
// certificate.
func (c *certs) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
