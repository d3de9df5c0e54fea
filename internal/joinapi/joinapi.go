// Package joinapi is the wire format of the join API that the server serves
// on its apiserver port and nodes join through: the agents and, through
// loopback, the server's own node.
//
//	GET  /cacerts           the server CA bundle (anonymous): a node hashes it
//	                        and compares the hash with its token's before it
//	                        trusts the server with anything.
//	POST /v1-cluster/join   a Request with the node's token → a Response with
//	                        the node's certificates and the cluster settings.
//	POST /v1-cluster/server-join
//	                        a ServerJoinRequest with the server token (only
//	                        that token) → a ServerJoinResponse: the cluster's
//	                        CAs and keys, sealed with the token's secret, and
//	                        the etcd membership the new server joins as a
//	                        learner (it promotes itself once in sync).
//
// Keys never leave a node: it sends certificate signing requests, and the
// server decides every name in the certificates it signs (it takes only the
// public key from a request, after checking the request's signature).
package joinapi

// Paths the server serves.
const (
	CACertsPath    = "/cacerts"
	JoinPath       = "/v1-cluster/join"
	ServerJoinPath = "/v1-cluster/server-join"
)

// Names of the certificates a node asks for.
const (
	CertKubeletClient  = "kubelet-client"  // system:node:<name> in system:nodes
	CertKubeletServing = "kubelet-serving" // <name>, its IPs, localhost
	CertKubeProxy      = "kube-proxy"      // system:kube-proxy
	CertFlannel        = "flannel"         // system:cluster-flannel
)

// CertNames lists every certificate a node needs.
var CertNames = []string{CertKubeletClient, CertKubeletServing, CertKubeProxy, CertFlannel}

// Request is what a node sends.
type Request struct {
	// Token is the credential part of the node's token: "server:<secret>",
	// "node:<secret>", a bootstrap token "<id>.<secret>" or a bare secret.
	Token string `json:"token"`
	// NodeName is the name the node registers.
	NodeName string `json:"nodeName"`
	// NodePassword proves that the node is the one that first registered
	// NodeName (it lives in the node's data dir).
	NodePassword string `json:"nodePassword"`
	// NodeIPs are the node's addresses: internal first, then external.
	NodeIPs []string `json:"nodeIPs"`
	// CSRs are PEM certificate requests, by certificate name.
	CSRs map[string]string `json:"csrs"`
}

// Response is what a node gets for a valid Request.
type Response struct {
	ServerCA string `json:"serverCA"` // PEM: verifies the apiserver and kubelet serving certificates
	ClientCA string `json:"clientCA"` // PEM: verifies client certificates (the kubelet's callers)
	// Certificates are PEM certificates, by certificate name.
	Certificates map[string]string `json:"certificates"`
	Config       Config            `json:"config"`
}

// Config is the cluster-wide settings a node must follow.
type Config struct {
	// Servers are the apiserver URLs the node may use (https://host:port).
	Servers        []string `json:"servers"`
	ClusterCIDR    string   `json:"clusterCIDR"`
	ServiceCIDR    string   `json:"serviceCIDR"`
	ClusterDNS     string   `json:"clusterDNS"`
	ClusterDomain  string   `json:"clusterDomain"`
	FlannelBackend string   `json:"flannelBackend"`
}

// Error is the body of every refusal. Retry says whether asking again
// later can succeed (the HTTP status says it too: 4xx no, 5xx yes).
type Error struct {
	Message string `json:"message"`
	Retry   bool   `json:"retry"`
}

// ServerJoinRequest is what a server joining an embedded-etcd cluster sends.
type ServerJoinRequest struct {
	// Token is the server token's credential ("server:<secret>" or the bare
	// secret); agent and bootstrap tokens are refused.
	Token string `json:"token"`
	// MemberName and PeerURL are the joining etcd member's.
	MemberName string `json:"memberName"`
	PeerURL    string `json:"peerURL"`
}

// ServerJoinResponse is what a joining server gets.
type ServerJoinResponse struct {
	// ClusterData is server/bootstrap's sealed data: CAs, keys, agent token.
	ClusterData []byte `json:"clusterData"`
	// MemberID is the learner added for the joining server.
	MemberID uint64 `json:"memberID"`
	// InitialCluster is name=peerURL,… of every member, the new one
	// included (etcd's --initial-cluster).
	InitialCluster string `json:"initialCluster"`
	Config         Config `json:"config"`
}
