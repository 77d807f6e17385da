package signals

import "time"

// Series returns the requests and errors of service's release in n
// consecutive slots of length slot from from (slot i covers [from+i*slot,
// from+(i+1)*slot), to the second), in one pass and without merging
// latencies: for charts.
func (s *Store) Series(service string, release uint64, from time.Time, slot time.Duration, n int) (requests, errors []uint64) {
	requests, errors = make([]uint64, n), make([]uint64, n)
	width := int64(slot / time.Second)
	if n <= 0 || width <= 0 {
		return requests, errors
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lo := from.Unix()
	for sec, sl := range s.slots[key{service, release}] {
		if sec < lo {
			continue
		}
		if i := (sec - lo) / width; i < int64(n) {
			requests[i] += sl.Requests
			errors[i] += sl.Errors
		}
	}
	return requests, errors
}
