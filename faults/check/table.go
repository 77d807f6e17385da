package check

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
)

// Invariants are the table's columns, in order.
var Invariants = []string{"linearizable", "acked-present", "started-once", "serving-bound", "orphans", "edge-failures", "stale-tokens", "converged"}

// Row is one scenario's runs: violations per invariant and edge request
// counts.
type Row struct {
	Scenario   string
	Runs       int
	Violations map[string]int
	// Requests and Failed count the edge requests sent and failed
	// (failed includes the excused ones); Excused counts those the fault
	// excused; Refused counts stale fencing tokens the agents refused.
	Requests, Failed, Excused, Refused int
}

// Add counts one run's violations (by invariant) into r.
func (r *Row) Add(v map[string][]string) {
	if r.Violations == nil {
		r.Violations = map[string]int{}
	}
	r.Runs++
	for k, list := range v {
		r.Violations[k] += len(list)
	}
}

// Table renders rows as the suite's summary: scenario x runs x each
// invariant's violations, plus the edge request counts.
func Table(rows []Row) string {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Scenario < rows[j].Scenario })
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "scenario\truns\t%s\tedge requests\tfailed\texcused\tstale refused\t\n", strings.Join(Invariants, "\t"))
	for _, r := range rows {
		cells := []string{r.Scenario, fmt.Sprint(r.Runs)}
		for _, inv := range Invariants {
			cells = append(cells, fmt.Sprint(r.Violations[inv]))
		}
		cells = append(cells, fmt.Sprint(r.Requests), fmt.Sprint(r.Failed), fmt.Sprint(r.Excused), fmt.Sprint(r.Refused))
		fmt.Fprintf(w, "%s\t\n", strings.Join(cells, "\t"))
	}
	w.Flush()
	return b.String()
}
