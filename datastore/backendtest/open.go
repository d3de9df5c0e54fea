package backendtest

import (
	"context"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/server"
)

// Open opens and starts the backend of a kine endpoint the way kine's own
// endpoint does. compactEvery ≤ 0 turns automatic compaction off (callers
// compact); retain is how many recent revisions compaction keeps. The
// returned function stops the backend and waits for it.
func Open(endpoint string, compactEvery time.Duration, retain int64, poll time.Duration) (server.Backend, func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	_, b, err := drivers.New(ctx, &wg, &drivers.Config{
		Endpoint:         endpoint,
		CompactInterval:  compactEvery,
		CompactMinRetain: retain,
		CompactBatchSize: 1000,
		PollBatchSize:    500,
		PollInterval:     poll,
		CompactTimeout:   5 * time.Second,
	})
	if err == nil {
		err = b.Start(ctx)
	}
	if err != nil {
		cancel()
		wg.Wait()
		return nil, nil, err
	}
	return b, func() { cancel(); wg.Wait() }, nil
}
