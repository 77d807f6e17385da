package render

import (
	"fmt"
	"strings"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// resultName is an analysis result in lower case ("pass").
func resultName(r deployv1.AnalysisResult) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ANALYSIS_RESULT_"))
}

// AnalysisSummary is an analysis verdict in one phrase: its result, what it
// counted as, the failure count and the reason.
func AnalysisSummary(a *deployv1.AnalysisVerdict) string {
	s := "analysis " + resultName(a.GetResult())
	if a.GetCounted() != a.GetResult() {
		s += " (counted " + resultName(a.GetCounted()) + ")"
	}
	if a.GetCounted() == deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL {
		s += fmt.Sprintf(" %d/%d", a.GetFailures(), a.GetFailureLimit())
	}
	return s + ": " + a.GetReason()
}

// AnalysisEvidence renders a verdict's evidence, one indented line each:
// the window, each release's signals, each check.
func AnalysisEvidence(a *deployv1.AnalysisVerdict) []string {
	lines := []string{fmt.Sprintf("    window %s - %s", Time(a.GetWindowStart()), Time(a.GetWindowEnd()))}
	sig := func(name string, rel uint64, s *deployv1.SignalSummary) string {
		return fmt.Sprintf("    %-6s %-4s %7d req %6d err %6.2f%%  p50 %s  p99 %s", name, release(rel), s.GetRequests(), s.GetErrors(),
			s.GetErrorRate(), s.GetP50().AsDuration(), s.GetP99().AsDuration())
	}
	lines = append(lines, sig("canary", a.GetCanaryRelease(), a.GetCanary()), sig("stable", a.GetStableRelease(), a.GetStable()))
	for _, c := range a.GetChecks() {
		lines = append(lines, fmt.Sprintf("    %-18s %-12s %s", c.GetName(), resultName(c.GetResult()), c.GetDetail()))
	}
	return lines
}
