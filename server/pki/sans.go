package pki

import (
	"fmt"
	"net"
	"slices"
)

// APIServerSANs returns the apiserver serving certificate's names: the node
// and advertise IPs, loopback, the in-cluster service names, the first
// service IP and every extra name the user asked for (--tls-san).
func APIServerSANs(nodeIPs []net.IP, serviceCIDR, clusterDomain string, extra []string) (SANs, error) {
	_, svcNet, err := net.ParseCIDR(serviceCIDR)
	if err != nil {
		return SANs{}, fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
	}
	apiServiceIP, err := FirstServiceIP(svcNet)
	if err != nil {
		return SANs{}, err
	}
	s := SANs{
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain},
		IPs:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), apiServiceIP},
	}
	s.IPs = append(s.IPs, nodeIPs...)
	for _, name := range extra {
		if ip := net.ParseIP(name); ip != nil {
			s.IPs = append(s.IPs, ip)
		} else {
			s.DNSNames = append(s.DNSNames, name)
		}
	}
	return s.dedup(), nil
}

// FirstServiceIP is the ClusterIP of the "kubernetes" service: the first
// address of the service network.
func FirstServiceIP(n *net.IPNet) (net.IP, error) {
	ip := slices.Clone(n.IP.To16())
	if v4 := n.IP.To4(); v4 != nil {
		ip = slices.Clone(v4)
	}
	ip[len(ip)-1]++
	if !n.Contains(ip) {
		return nil, fmt.Errorf("service network %s has no usable address", n)
	}
	return ip, nil
}

func (s SANs) dedup() SANs {
	var out SANs
	seenDNS := map[string]bool{}
	for _, d := range s.DNSNames {
		if !seenDNS[d] {
			seenDNS[d] = true
			out.DNSNames = append(out.DNSNames, d)
		}
	}
	seenIP := map[string]bool{}
	for _, ip := range s.IPs {
		if ip != nil && !seenIP[ip.String()] {
			seenIP[ip.String()] = true
			out.IPs = append(out.IPs, ip)
		}
	}
	return out
}
