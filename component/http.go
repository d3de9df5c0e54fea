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
			resp, err := get(ctx, c, url)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			return nil
		})
	}
}

// HTTPAnswers returns a check that polls url until it answers at all,
// whatever the status: a daemon that serves before it is ready.
func HTTPAnswers(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		return Poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
			_, err := get(ctx, c, url)
			return err
		})
	}
}

// get GETs url and closes the body: only the status matters here.
func get(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}
