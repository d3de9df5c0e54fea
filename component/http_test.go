package component

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHTTPReadyAndAnswers(t *testing.T) {
	for _, tc := range []struct {
		name                string
		status              int // 0: nothing listens
		wantReady, wantAnsw bool
	}{
		{"ready", http.StatusOK, true, true},
		{"serving, not ready", http.StatusInternalServerError, false, true},
		{"forbidden", http.StatusForbidden, false, true},
		{"not listening", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			if tc.status == 0 {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				url = "http://" + l.Addr().String() + "/readyz"
				l.Close()
			} else {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) }))
				defer srv.Close()
				url = srv.URL + "/readyz"
			}
			for _, check := range []struct {
				name string
				f    func(*http.Client, string) func(context.Context) error
				want bool
			}{{"HTTPReady", HTTPReady, tc.wantReady}, {"HTTPAnswers", HTTPAnswers, tc.wantAnsw}} {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				err := check.f(http.DefaultClient, url)(ctx)
				cancel()
				if (err == nil) != check.want {
					t.Errorf("%s: err = %v; want success %v", check.name, err, check.want)
				}
			}
		})
	}
}
