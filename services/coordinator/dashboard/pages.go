package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// page is what the page templates render.
type page struct {
	Title   string
	View    string // "overview" or "service"
	Name    string // the service of a service page
	Who     string
	CSRF    string
	Regions map[string]template.HTML
}

// regions are the parts of a view the live stream replaces, by id.
type regions map[string]string

// overviewRegions renders the overview: every service the token sees with
// its current release and active rollout.
func (s *Server) overviewRegions(ctx context.Context, secret string) (regions, error) {
	svcs, err := s.api.services(ctx, secret)
	if err != nil {
		return nil, err
	}
	act, err := s.api.rollouts(ctx, secret, "", true, 100)
	if err != nil {
		return nil, err
	}
	byService := map[string]*deployv1.Rollout{}
	for _, ro := range act {
		byService[ro.GetService()] = ro
	}
	now := s.cfg.Now()
	rows := make([]ServiceRow, 0, len(svcs))
	for _, svc := range svcs {
		rels, _, err := s.api.releases(ctx, secret, svc.GetName(), 0)
		if err != nil {
			return nil, err
		}
		ix := indexReleases(rels)
		row := serviceRow(svc, ix, now)
		if ro := byService[svc.GetName()]; ro != nil {
			row.Rollout = rolloutView(ro, specOf(rels, ro.GetToRelease()), ix, now)
		}
		rows = append(rows, row)
	}
	return s.renderRegions(map[string]any{"services": rows})
}

func serviceRow(svc *deployv1.Service, ix releaseIndex, now time.Time) ServiceRow {
	return ServiceRow{Name: svc.GetName(), Current: ix.get(svc.GetStableRelease()), Latest: ix.get(svc.GetLatestRelease()),
		Host: svc.GetSpec().GetRoute().GetHost(), Strategy: strategyName(svc.GetSpec().GetUpdate().GetStrategy()),
		Updated: ago(svc.GetUpdatedAt().AsTime(), now)}
}

func specOf(rels []*deployv1.Release, n uint64) *deployv1.ServiceSpec {
	for _, r := range rels {
		if r.GetNumber() == n {
			return r.GetSpec()
		}
	}
	return nil
}

// serviceData is a service page's content.
type serviceData struct {
	Service  ServiceRow
	Rollout  *RolloutView
	Nodes    []NodeGroup
	Chart    Chart
	Releases []ReleaseRow
	Audit    []AuditRow
	Count    int32
}

// serviceRegions renders one service's page: its rollout, instances, chart,
// history and audit.
func (s *Server) serviceRegions(ctx context.Context, secret, name string) (regions, error) {
	svc, err := s.api.service(ctx, secret, name)
	if err != nil {
		return nil, err
	}
	rels, audit, err := s.api.releases(ctx, secret, name, 0)
	if err != nil {
		return nil, err
	}
	ros, err := s.api.rollouts(ctx, secret, name, false, 10)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	ix := indexReleases(rels)
	d := serviceData{Service: serviceRow(svc, ix, now), Count: svc.GetSpec().GetCount(),
		Releases: releaseRows(rels, svc.GetStableRelease(), ix, now), Audit: auditRows(audit, 30)}
	if len(ros) > 0 {
		d.Rollout = rolloutView(ros[0], specOf(rels, ros[0].GetToRelease()), ix, now)
		if d.Rollout.Active && s.cfg.PauseEnds != nil {
			if end, ok := s.cfg.PauseEnds(ros[0].GetId()); ok {
				d.Rollout.PauseLeft = pauseLeft(end, now)
			}
		}
	}
	// Instances and events come from the replicated state; they are shown
	// only for a service and rollouts the API has just shown this token.
	d.Nodes = instanceGroups(name, s.cfg.Instances(), ix, now)
	events := map[string][]*deployv1.RolloutEvent{}
	if s.cfg.Events != nil {
		for _, ro := range ros {
			if ro.GetUpdatedAt().AsTime().After(now.Add(-chartWindow)) || active(ro.GetState()) {
				events[ro.GetId()] = s.cfg.Events(ro.GetId())
			}
		}
	}
	var rates Rates
	if s.cfg.Signals != nil {
		rates = func(release uint64, from time.Time, slot time.Duration, n int) ([]uint64, []uint64) {
			return s.cfg.Signals(name, release, from, slot, n)
		}
	}
	d.Chart = buildChart(chartPoints(ros, events), ix, now, rates)
	return s.renderRegions(map[string]any{"head": d, "rollout": d, "instances": d, "chart": d, "history": d, "audit": d})
}

// renderRegions executes template "region-<id>" for each id.
func (s *Server) renderRegions(data map[string]any) (regions, error) {
	out := regions{}
	for id, v := range data {
		var b bytes.Buffer
		if err := s.tmpl.ExecuteTemplate(&b, "region-"+id, v); err != nil {
			return nil, fmt.Errorf("dashboard: render %s: %w", id, err)
		}
		out[id] = b.String()
	}
	return out, nil
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	rs, err := s.overviewRegions(r.Context(), sess.secret)
	s.page(w, r, page{Title: "Services", View: "overview", Who: sess.who, CSRF: sess.csrf}, rs, err)
}

func (s *Server) servicePage(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	name := r.PathValue("name")
	rs, err := s.serviceRegions(r.Context(), sess.secret, name)
	s.page(w, r, page{Title: name, View: "service", Name: name, Who: sess.who, CSRF: sess.csrf}, rs, err)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, p page, rs regions, err error) {
	if status.Code(err) == codes.Unauthenticated {
		s.clearCookie(w)
		http.Redirect(w, r, "/login?error="+urlEscape(describe(err)), http.StatusSeeOther)
		return
	}
	p.Regions = map[string]template.HTML{}
	if err != nil {
		w.WriteHeader(httpStatus(err))
		p.Regions["error"] = template.HTML(template.HTMLEscapeString(describe(err))) //nolint:gosec // escaped
	}
	for id, h := range rs {
		p.Regions[id] = template.HTML(h) //nolint:gosec // rendered by html/template
	}
	s.render(w, "page.html", p)
}

// events is the live stream of a view: each region is sent when it
// changes, as an SSE "region" event {"id", "html"}. A refused token ends
// the stream with a "logout" event.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	sess := sessionOf(r)
	view, name := r.URL.Query().Get("view"), r.URL.Query().Get("name")
	if view != "overview" && (view != "service" || name == "") {
		writeJSONError(w, http.StatusBadRequest, `view must be "overview" or "service" with a name`)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	ctx := r.Context()
	last := regions{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var changed <-chan struct{}
		if s.cfg.Changed != nil {
			changed = s.cfg.Changed()
		}
		var rs regions
		var err error
		if view == "overview" {
			rs, err = s.overviewRegions(ctx, sess.secret)
		} else {
			rs, err = s.serviceRegions(ctx, sess.secret, name)
		}
		switch {
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.Unauthenticated:
			sendEvent(w, "logout", map[string]string{"error": describe(err)})
			fl.Flush()
			return
		case err != nil:
			rs = regions{"error": template.HTMLEscapeString(describe(err))}
		default:
			rs["error"] = ""
		}
		for id, html := range rs {
			if last[id] != html {
				sendEvent(w, "region", map[string]string{"id": id, "html": html})
				last[id] = html
			}
		}
		fl.Flush()
		select {
		case <-ctx.Done():
			return
		case <-changed:
			// Coalesce bursts of applies into one refresh.
			select {
			case <-ctx.Done():
				return
			case <-time.After(150 * time.Millisecond):
			}
		case <-tick.C:
		}
	}
}

func sendEvent(w io.Writer, name string, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
}

// actionBody is the optional JSON body of an action.
type actionBody struct {
	Reason    string `json:"reason"`
	Full      bool   `json:"full"`
	ToRelease uint64 `json:"to_release"`
}

func readAction(w http.ResponseWriter, r *http.Request) (actionBody, bool) {
	var b actionBody
	r.Body = http.MaxBytesReader(w, r.Body, 8192)
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "body: "+err.Error())
		return b, false
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &b); err != nil {
			writeJSONError(w, http.StatusBadRequest, "body: not the JSON {\"reason\", \"full\", \"to_release\"}: "+err.Error())
			return b, false
		}
	}
	return b, true
}

// rolloutAction promotes, pauses, resumes or aborts a rollout through the
// API, as the logged-in token.
func (s *Server) rolloutAction(w http.ResponseWriter, r *http.Request) {
	if !s.checkCSRF(r) {
		writeJSONError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
		return
	}
	b, ok := readAction(w, r)
	if !ok {
		return
	}
	sess := sessionOf(r)
	id, action := r.PathValue("id"), r.PathValue("action")
	by := "dashboard: " + sess.who
	ctx, cancel := s.api.ctx(r.Context(), sess.secret)
	defer cancel()
	cl := s.api.deploy()
	var ro *deployv1.Rollout
	var err error
	switch action {
	case "promote":
		var resp *deployv1.PromoteRolloutResponse
		resp, err = cl.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: id, Full: b.Full, By: by, Reason: b.Reason})
		ro = resp.GetRollout()
	case "pause":
		var resp *deployv1.PauseRolloutResponse
		resp, err = cl.PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: id, By: by, Reason: b.Reason})
		ro = resp.GetRollout()
	case "resume":
		var resp *deployv1.ResumeRolloutResponse
		resp, err = cl.ResumeRollout(ctx, &deployv1.ResumeRolloutRequest{Id: id, By: by, Reason: b.Reason})
		ro = resp.GetRollout()
	case "abort":
		var resp *deployv1.AbortRolloutResponse
		resp, err = cl.AbortRollout(ctx, &deployv1.AbortRolloutRequest{Id: id, By: by, Reason: b.Reason})
		ro = resp.GetRollout()
	default:
		writeJSONError(w, http.StatusNotFound, fmt.Sprintf("unknown action %q (one of promote, pause, resume, abort)", action))
		return
	}
	if err != nil {
		writeJSONError(w, httpStatus(err), describe(err))
		return
	}
	s.log.Info("dashboard action", "action", action, "rollout", id, "by", sess.who)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message": fmt.Sprintf("%s of %s accepted (recorded for the engine; the rollout is %s)", action, id, stateName(ro.GetState())),
		"state": stateName(ro.GetState())})
}

// rollback re-deploys an earlier release (the previous one without
// to_release) through the API.
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	if !s.checkCSRF(r) {
		writeJSONError(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
		return
	}
	b, ok := readAction(w, r)
	if !ok {
		return
	}
	sess := sessionOf(r)
	name := r.PathValue("name")
	var rid [8]byte
	_, _ = rand.Read(rid[:])
	ctx, cancel := s.api.ctx(r.Context(), sess.secret)
	defer cancel()
	resp, err := s.api.deploy().RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: name, ToRelease: b.ToRelease,
		RequestId: "dashboard-" + hex.EncodeToString(rid[:]), By: "dashboard: " + sess.who, Reason: b.Reason})
	if err != nil {
		writeJSONError(w, httpStatus(err), describe(err))
		return
	}
	rel := resp.GetRelease()
	s.log.Info("dashboard action", "action", "rollback", "service", name, "release", rel.GetNumber(), "by", sess.who)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true,
		"message": fmt.Sprintf("rollback of %s: release #%s (%s of #%d), rollout %s", name, strconv.FormatUint(rel.GetNumber(), 10),
			imageTag(rel.GetSpec().GetImage()), rel.GetRollbackOf(), resp.GetRollout().GetId())})
}
