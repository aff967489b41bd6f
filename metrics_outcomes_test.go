package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/kelpie/cluster/metrics"
)

// TestMetricsPlacementOutcomes: every outcome Place reports is one of the
// label values metrics pre-declares (and the dashboard and alerts use).
func TestMetricsPlacementOutcomes(t *testing.T) {
	for _, err := range []error{
		nil,
		&NoQuorumError{Reachable: 1, Total: 3},
		fmt.Errorf("forwarded: %w", ErrNotLeader),
		ErrNoCapacity,
		ErrNoEligibleNode,
		ErrLeasePending,
		ErrInvalidArgument,
		context.DeadlineExceeded,
		context.Canceled,
		errors.New("something else"),
	} {
		if o := outcomeOf(err); !slices.Contains(metrics.PlacementOutcomes, o) {
			t.Errorf("outcomeOf(%v) = %q, not in metrics.PlacementOutcomes %v", err, o, metrics.PlacementOutcomes)
		}
	}
}
