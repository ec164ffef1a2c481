package events

// SetParallelism changes how VerifyAll splits the ledger, so that tests can
// exercise range stitching on small ledgers. It returns a restore function.
func SetParallelism(workers int, minRange int64) (restore func()) {
	w, r := verifyWorkers, minParallelRange
	verifyWorkers, minParallelRange = workers, minRange
	return func() { verifyWorkers, minParallelRange = w, r }
}
