// Command hello is the HTTP ceiling tempalias is measured against: a
// hello-world Go handler for POST /aliases (it reads the body and answers
// 201 with a tiny JSON document, touching no disk), and, when -static is
// given, a bare http.FileServer of that directory for everything else.
//
//	hello -listen 127.0.0.1:8090 [-static ../static]
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "listen `address`")
	static := flag.String("static", "", "serve this `directory` with http.FileServer under /")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /aliases", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"hello":"world"}`+"\n")
	})
	if *static != "" {
		mux.Handle("/", http.FileServer(http.Dir(*static)))
	}
	log.Printf("hello listening on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}
