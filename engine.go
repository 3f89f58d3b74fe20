package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/tempalias/tempalias/config"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
	"github.com/tempalias/tempalias/store/etcdstore"
)

// openStore opens the engine store.engine names. On failure the engine
// is nil, never a nil pointer of an engine's type.
func openStore(cfg *config.Config, log *slog.Logger) (store.Engine, error) {
	if cfg.Store.Engine == "etcd" {
		return openEtcd(cfg, log)
	}
	st, err := boltstore.Open(cfg.DataFile, boltstore.Options{
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		OpenTimeout:      cfg.Store.OpenTimeout.Duration,
		// The per-target index serves limits.aliases_per_target alone;
		// without that limit a creation writes a page less.
		NoTargetIndex: cfg.Limits.AliasesPerTarget == 0,
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func openEtcd(cfg *config.Config, log *slog.Logger) (store.Engine, error) {
	e := cfg.Etcd
	opts := etcdstore.Options{
		Endpoints:        e.Endpoints,
		Prefix:           e.Prefix,
		Username:         e.Username,
		Password:         e.Password,
		DialTimeout:      e.DialTimeout.Duration,
		RequestTimeout:   e.RequestTimeout.Duration,
		LeaseTTL:         e.LeaseTTL.Duration,
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		Logger:           log,
	}
	if e.CAFile != "" {
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd.cert_file: %w", err)
		}
		ca, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("etcd.ca_file: %s holds no PEM certificate", e.CAFile)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	st, err := etcdstore.Open(context.Background(), opts)
	if err != nil {
		return nil, err
	}
	return st, nil
}
