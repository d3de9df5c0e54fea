package harness

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is a small authoritative-only DNS server for tests: it answers A
// queries for its names and NXDOMAIN for everything else, so that a node's
// "outside" resolver never has to be a real one (tests send nothing off
// the machine).
type DNS struct {
	Addr    string // ip:53
	names   map[string]net.IP
	queries atomic.Int64
	conn    *net.UDPConn
}

// StartDNS serves names (fully qualified or not; "www.example.test" →
// 10.0.0.1) over UDP on ip:53 until the test ends.
func StartDNS(t *testing.T, ip string, names map[string]string) *DNS {
	t.Helper()
	d := &DNS{Addr: net.JoinHostPort(ip, "53"), names: map[string]net.IP{}}
	for n, a := range names {
		d.names[strings.ToLower(strings.TrimSuffix(n, "."))+"."] = net.ParseIP(a).To4()
	}
	addr, err := net.ResolveUDPAddr("udp", d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	d.conn, err = net.ListenUDP("udp", addr)
	if err != nil {
		t.Fatalf("DNS server on %s: %v", d.Addr, err)
	}
	t.Cleanup(func() { d.conn.Close() })
	go d.serve()
	return d
}

// Queries is how many queries the server has answered.
func (d *DNS) Queries() int64 { return d.queries.Load() }

func (d *DNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if reply, ok := d.answer(buf[:n]); ok {
			d.queries.Add(1)
			_, _ = d.conn.WriteToUDP(reply, from)
		}
	}
}

func (d *DNS) answer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	h.Response, h.Authoritative, h.RecursionAvailable = true, true, true
	ip, known := d.names[strings.ToLower(q.Name.String())]
	if !known {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil {
		return nil, false
	}
	if known && q.Type == dnsmessage.TypeA {
		if b.StartAnswers() != nil {
			return nil, false
		}
		var a [4]byte
		copy(a[:], ip)
		if b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 30}, dnsmessage.AResource{A: a}) != nil {
			return nil, false
		}
	}
	reply, err := b.Finish()
	return reply, err == nil
}
