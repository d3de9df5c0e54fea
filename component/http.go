package component

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// HTTPReady returns a Ready check that polls url until it answers 200 OK:
// the health endpoints of upstream daemons.
func HTTPReady(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		// Every start waits on these in turn: a finer poll is cheap (one
		// local request) and each step ends closer to when the daemon is up.
		return Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			return nil
		})
	}
}
