//go:build !race

package eventsourcing_test

// raceEnabled reports a build with the race detector, under which sync.Pool
// drops items at random, so allocation counts are not exact.
const raceEnabled = false
