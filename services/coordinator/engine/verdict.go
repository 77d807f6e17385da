package engine

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/rollout"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// VerdictProto is an analysis event's record as the API carries it; nil
// for nil.
func VerdictProto(a *rollout.AnalysisRecord, canary, stable uint64) *deployv1.AnalysisVerdict {
	if a == nil {
		return nil
	}
	v := a.Verdict
	out := &deployv1.AnalysisVerdict{
		Result: resultProto(v.Result), Counted: resultProto(a.Counted), Reason: v.Reason,
		WindowStart: timestamppb.New(a.From), WindowEnd: timestamppb.New(a.To),
		Canary: summaryProto(v.Canary), Stable: summaryProto(v.Stable),
		Failures: int32(a.Failures), FailureLimit: int32(a.FailureLimit),
		CanaryRelease: canary, StableRelease: stable,
	}
	for _, c := range v.Checks {
		out.Checks = append(out.Checks, &deployv1.AnalysisCheck{Name: c.Name, Result: resultProto(c.Result), Observed: c.Observed,
			Threshold: c.Threshold, Test: c.Test, PValue: c.PValue, Detail: c.Detail})
	}
	return out
}

func resultProto(r analysis.Result) deployv1.AnalysisResult {
	switch r {
	case analysis.Pass:
		return deployv1.AnalysisResult_ANALYSIS_RESULT_PASS
	case analysis.Fail:
		return deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL
	case analysis.Inconclusive:
		return deployv1.AnalysisResult_ANALYSIS_RESULT_INCONCLUSIVE
	}
	return deployv1.AnalysisResult_ANALYSIS_RESULT_UNSPECIFIED
}

func summaryProto(s analysis.Summary) *deployv1.SignalSummary {
	return &deployv1.SignalSummary{Requests: s.Requests, Errors: s.Errors, ErrorRate: s.ErrorRate,
		P50: durationpb.New(s.P50), P99: durationpb.New(s.P99)}
}
