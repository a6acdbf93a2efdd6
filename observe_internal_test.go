package eventsourcing

import (
	"context"
	"testing"
)

func TestObserveNilIsFree(t *testing.T) {
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, end := observe(ctx, nil, Op{Kind: OpPut, Events: 1})
		end(OpResult{Rows: 1})
		_ = c
	})
	if allocs != 0 {
		t.Errorf("Observe with a nil Observer: %v allocations", allocs)
	}
}
