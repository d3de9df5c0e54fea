// Command webapp is the tiny test workload: `webapp` serves "hello from
// <hostname>" on :8080; `webapp get URL` fetches a URL and `webapp lookup
// NAME [SERVER]` resolves a name; `webapp write FILE TEXT` and `webapp cat FILE`
// write and print a file (for checks from inside a pod, where there is no
// shell or wget). Their failures say how long they took.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	if len(os.Args) >= 3 && os.Args[1] == "lookup" {
		server := ""
		if len(os.Args) == 4 {
			server = os.Args[3]
		}
		os.Exit(lookup(os.Args[2], server))
	}
	if len(os.Args) == 4 && os.Args[1] == "write" {
		if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "cat" {
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
		return
	}
	host, _ := os.Hostname()
	addr := ":8080"
	if v := os.Getenv("LISTEN"); v != "" {
		addr = v
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	log.Printf("webapp %s listening on %s", host, addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}

func get(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	begin := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed after %dms: %v\n", time.Since(begin).Milliseconds(), err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

// lookup resolves name as the pod's resolv.conf says, or asks server
// (ip:port) alone.
func lookup(name, server string) int {
	r := net.DefaultResolver
	if server != "" {
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	begin := time.Now()
	addrs, err := r.LookupHost(context.Background(), name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed after %dms: %v\n", time.Since(begin).Milliseconds(), err)
		return 1
	}
	fmt.Println(strings.Join(addrs, " "))
	return 0
}
