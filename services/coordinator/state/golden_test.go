package state_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/state"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// writeGolden adds the golden files that are missing (it never rewrites
// one: a golden entry is a promise that what a released coordinator wrote
// still reads).
var writeGolden = flag.Bool("write-golden", false, "write missing golden log entries and snapshots to testdata/golden")

const goldenDir = "testdata/golden"

// goldenHistory is a log with an entry of every kind, as the coordinator
// writes them: scenario's entries, then a rollout step made by the real
// machine (with a placement, a replacement link, an intent and events).
func goldenHistory(t *testing.T) *log {
	l := scenario(t)
	sp := rollout.Spec{Service: "api", To: 1, Count: 2, Config: rollout.Config{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxParallel: 1}}
	st, err := rollout.New(sp)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	l.add(&statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: &statev1.RolloutStepOp{
		Service: "api", RolloutId: "api-1", Machine: raw, Phase: deployv1.RolloutState_ROLLOUT_STATE_RUNNING, Step: 1,
		Message: "placing", Weights: map[string]int32{"1": 100}, LastCommand: 0, AwaitingPromote: false,
		Place: []*agentv1.Allocation{{Id: "api-v1-20-0", NodeId: "n1", Service: "api", Release: 1, Track: "stable", Image: "slipway/demo:v1",
			Port: 8080, DesiredState: agentv1.DesiredState_DESIRED_STATE_RUNNING}},
		Replaces: map[string]string{"api-v1-20-0": "api-1-a"},
		Drain:    []string{"api-1-b"},
		Intent:   &edgev1.TrafficIntent{Service: "api", Generation: 2, Host: "api.example", Path: "/", Weights: map[string]int32{"1": 100}},
		Healthy:  map[string]int32{"1": 1},
		Events:   []*statev1.StepEvent{{Kind: "migrated", Message: "api-1-a on n3: replacement api-v1-20-0 placed on n1"}},
	}}})
	addSecretEntries(l)
	// Schema version 6: a pass's node changes in one entry (entry 25).
	l.add(&statev1.Command{Op: &statev1.Command_UpsertNodes{UpsertNodes: &statev1.UpsertNodesOp{Nodes: []*clusterv1.Node{
		{Id: "n1", Address: "10.0.0.1:7410", Status: clusterv1.NodeStatus_NODE_STATUS_READY},
		{Id: "n9", Address: "10.0.0.9:7410", Status: clusterv1.NodeStatus_NODE_STATUS_DOWN}}}}})
	addScopeEntries(t, l)
	// Schema version 8 (entries 29-34): six versions of a secret; the
	// sixth prunes the first (no release pins it).
	for n := uint64(1); n <= 6; n++ {
		l.add(&statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Name: "tok", Services: []string{"api"},
			Version: &statev1.SecretVersionRecord{Meta: &deployv1.SecretVersion{Version: n, Digest: fmt.Sprintf("hmac-sha256:t%d", n), Size: 5, KeyId: "k2", CreatedBy: "acc-admin"},
				Ciphertext: []byte(fmt.Sprintf("sealed-tok-%d", n))}}}})
	}
	return l
}

// addScopeEntries adds the entries of schema version 7 (entries 26-28): a
// config created scoped to api, its scope widened, and a conditional
// deploy of api mounting it unversioned (pinned when applied).
func addScopeEntries(t *testing.T, l *log) {
	f := state.New()
	for _, e := range l.entries {
		f.Apply(e)
	}
	api, err := f.Service("api")
	if err != nil {
		t.Fatal(err)
	}
	cfg := deployv1.SecretKind_SECRET_KIND_CONFIG
	l.add(&statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Kind: cfg, Name: "app.conf", Services: []string{"api"},
		Version: &statev1.SecretVersionRecord{Meta: &deployv1.SecretVersion{Version: 1, Digest: "hmac-sha256:c1", Size: 9, KeyId: "k2", CreatedBy: "acc-admin"}, Ciphertext: []byte("sealed-conf")}}}})
	l.add(&statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Kind: cfg, Name: "app.conf", SetServices: true, Services: []string{"api", "web-*"}, By: "acc-admin"}}})
	s := spec("api", "slipway/demo:v3")
	s.Configs = []*deployv1.FileMount{{Name: "app.conf", Target: "/app.conf", Mode: 0o444}}
	l.add(&statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{Spec: s, RequestId: "r-scoped", Supersede: true, CreatedBy: "ci",
		ExpectedRelease: proto.Uint64(api.GetLatestRelease())}}})
}

// addSecretEntries adds the secret entries of schema version 4 (entries
// 21-24 of the golden log): a secret created, updated, rekeyed, deleted.
func addSecretEntries(l *log) {
	ver := func(n uint64, key string) *statev1.SecretVersionRecord {
		return &statev1.SecretVersionRecord{Meta: &deployv1.SecretVersion{Version: n, Digest: fmt.Sprintf("hmac-sha256:%02d", n), Size: 7, KeyId: key, CreatedBy: "acc-admin"},
			Ciphertext: []byte(fmt.Sprintf("sealed-%d-%s", n, key))}
	}
	sec := deployv1.SecretKind_SECRET_KIND_SECRET
	l.add(&statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Kind: sec, Name: "db", Version: ver(1, "k1")}}})
	l.add(&statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Kind: sec, Name: "db", Version: ver(2, "k1")}}})
	l.add(&statev1.Command{Op: &statev1.Command_RekeySecrets{RekeySecrets: &statev1.RekeySecretsOp{Secrets: []*statev1.SecretRecord{
		{Kind: sec, Name: "db", Versions: []*statev1.SecretVersionRecord{ver(1, "k2"), ver(2, "k2")}}}}}})
	l.add(&statev1.Command{Op: &statev1.Command_DeleteSecret{DeleteSecret: &statev1.DeleteSecretOp{Kind: sec, Name: "db", By: "acc-admin"}}})
}

func kindOf(t *testing.T, data []byte) string {
	cmd := &statev1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		t.Fatal(err)
	}
	od := cmd.ProtoReflect().Descriptor().Oneofs().ByName("op")
	fd := cmd.ProtoReflect().WhichOneof(od)
	if fd == nil {
		t.Fatal("entry without op")
	}
	return string(fd.Name())
}

// TestGoldenEntriesStillDecode applies the log entries a coordinator wrote
// (testdata/golden/entries, one file an entry, in index order) to a fresh
// FSM and checks that it reaches the state recorded with them
// (testdata/golden/snapshot.binpb), and that the recorded snapshot still
// restores to it. Every kind of entry has a golden file.
func TestGoldenEntriesStillDecode(t *testing.T) {
	if *writeGolden {
		writeMissingGolden(t)
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "entries", "*.binpb"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden entries (%v): run go test -run TestGoldenEntriesStillDecode -write-golden", err)
	}
	slices.Sort(files)
	want := readSnapshot(t, filepath.Join(goldenDir, "snapshot.binpb"))
	// Entries after the recorded snapshot's last index are kinds added
	// later (the secret entries of version 4): they must still apply, and
	// are checked after the comparison with the recorded state.
	f := state.New()
	kinds := map[string]bool{}
	var later []*raft.Log
	for i, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		kinds[kindOf(t, data)] = true
		e := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}
		if e.Index > want.GetLastIndex() {
			later = append(later, e)
			continue
		}
		f.Apply(e)
	}
	od := (&statev1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	for i := range od.Fields().Len() {
		if k := string(od.Fields().Get(i).Name()); !kinds[k] {
			t.Errorf("no golden entry of kind %s: add one to goldenHistory and run with -write-golden", k)
		}
	}
	// Snapshot fields added after the golden files were recorded: the
	// entries now also produce them, the recorded snapshot lacks them. The
	// version is the writer's schema version, newer now.
	added := protocmp.IgnoreFields(&statev1.Snapshot{}, "supersessions", "version")
	if d := cmp.Diff(want, snapshotOf(t, f), protocmp.Transform(), added); d != "" {
		t.Errorf("golden entries applied to a different state (-recorded +now):\n%s", d)
	}
	raw, err := os.ReadFile(filepath.Join(goldenDir, "snapshot.binpb"))
	if err != nil {
		t.Fatal(err)
	}
	g := state.New()
	if err := g.RestoreBytes(raw); err != nil {
		t.Fatalf("golden snapshot no longer restores: %v", err)
	}
	if d := cmp.Diff(want, snapshotOf(t, g), protocmp.Transform(), added); d != "" {
		t.Errorf("golden snapshot restored to a different state (-recorded +now):\n%s", d)
	}
	// The superseded-by link: recorded by the entries now, read from the
	// rollout's message in a snapshot written before it was recorded.
	for _, fsm := range []*state.FSM{f, g} {
		for id, want := range map[string]string{"web-1": "web-2", "web-2": "web-3"} {
			if by, ok := fsm.SupersededBy(id); !ok || by != want {
				t.Errorf("SupersededBy(%s) = %q, %v; want %s", id, by, ok, want)
			}
		}
		if by, ok := fsm.SupersededBy("api-1"); ok {
			t.Errorf("SupersededBy(api-1) = %q: it was never superseded", by)
		}
	}
	for _, e := range later {
		if err, ok := f.Apply(e).(error); ok {
			t.Errorf("golden entry %d (%s) no longer applies: %v", e.Index, kindOf(t, e.Data), err)
		}
	}
	if len(later) > 0 {
		// The secret entries: created, updated, rekeyed, deleted.
		if _, err := f.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); err == nil {
			t.Error("golden secret db still exists after its delete entry")
		}
		// The scope entries: created for api, widened, mounted by api.
		conf, err := f.Secret(deployv1.SecretKind_SECRET_KIND_CONFIG, "app.conf")
		if err != nil || !slices.Equal(conf.GetServices(), []string{"api", "web-*"}) || !slices.Equal(conf.GetUsedBy(), []string{"api"}) {
			t.Errorf("golden config app.conf = %v, %v; want scoped to api, web-* and mounted by api", conf, err)
		}
		if rels, _, _ := f.Releases("api", 1); len(rels) != 1 || rels[0].GetRequestId() != "r-scoped" || rels[0].GetSpec().GetConfigs()[0].GetVersion() != 1 {
			t.Errorf("golden scoped deploy: latest release of api %v, want r-scoped pinning app.conf version 1", rels)
		}
		// The pruning entries: version 1 of tok pruned by the sixth.
		if tok, err := f.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "tok"); err != nil || len(tok.GetVersions()) != state.SecretVersionsKept || tok.GetVersions()[0].GetVersion() != 2 {
			t.Errorf("golden secret tok = %v, %v; want versions 2-6 (1 pruned)", tok, err)
		}
	}
	// web-1 and web-2, and api-1 by the scoped deploy of entry 28.
	if len(snapshotOf(t, f).GetSupersessions()) != 3 {
		t.Errorf("supersessions not recorded in the snapshot: %v", snapshotOf(t, f).GetSupersessions())
	}
	// The machine states held in the log still decode, field for field.
	for _, m := range want.GetMachines() {
		if len(m.GetState()) > 0 && string(m.GetState()) != `{"Service":"api"}` {
			var st rollout.State
			dec := json.NewDecoder(strings.NewReader(string(m.GetState())))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&st); err != nil {
				t.Errorf("machine of %s no longer decodes: %v", m.GetRolloutId(), err)
			}
		}
	}
}

func snapshotOf(t *testing.T, f *state.FSM) *statev1.Snapshot {
	b, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	s := &statev1.Snapshot{}
	if err := proto.Unmarshal(b, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func readSnapshot(t *testing.T, name string) *statev1.Snapshot {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := &statev1.Snapshot{}
	if err := proto.Unmarshal(b, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeMissingGolden(t *testing.T) {
	l := goldenHistory(t)
	if err := os.MkdirAll(filepath.Join(goldenDir, "entries"), 0o755); err != nil {
		t.Fatal(err)
	}
	existing, _ := filepath.Glob(filepath.Join(goldenDir, "entries", "*.binpb"))
	if len(existing) > 0 {
		// Entries of kinds added later are appended after the recorded
		// ones; nothing recorded (nor the snapshot) is rewritten.
		for i, e := range l.entries[min(len(existing), len(l.entries)):] {
			name := filepath.Join(goldenDir, "entries", fmt.Sprintf("%03d-%s.binpb", len(existing)+i+1, kindOf(t, e.Data)))
			if err := os.WriteFile(name, e.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("golden entry %s added", filepath.Base(name))
		}
		return
	}
	f := state.New()
	for i, e := range l.entries {
		name := filepath.Join(goldenDir, "entries", fmt.Sprintf("%03d-%s.binpb", i+1, kindOf(t, e.Data)))
		if err := os.WriteFile(name, e.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		f.Apply(e)
	}
	b, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, "snapshot.binpb"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
