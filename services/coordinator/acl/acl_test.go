package acl

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

type fakeRollouts map[string]string

func (f fakeRollouts) RolloutService(id string) (string, bool) { s, ok := f[id]; return s, ok }

func TestRequired(t *testing.T) {
	ro := fakeRollouts{"web-3": "web", "my-app-2": "my-app"}
	tests := []struct {
		method string
		req    any
		want   Need
	}{
		{deployv1.DeployService_Deploy_FullMethodName, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{Name: "api"}},
			Need{Any: []Policy{Deploy}, Service: "api"}},
		{deployv1.DeployService_RollbackService_FullMethodName, &deployv1.RollbackServiceRequest{Service: "web"},
			Need{Any: []Policy{Deploy, Operate}, Service: "web"}},
		{deployv1.DeployService_PauseRollout_FullMethodName, &deployv1.PauseRolloutRequest{Id: "web-3"},
			Need{Any: []Policy{Operate}, Service: "web"}},
		{deployv1.DeployService_PromoteRollout_FullMethodName, &deployv1.PromoteRolloutRequest{Id: "my-app-2"},
			Need{Any: []Policy{Operate}, Service: "my-app"}},
		// unknown to the state: the id names its service
		{deployv1.DeployService_AbortRollout_FullMethodName, &deployv1.AbortRolloutRequest{Id: "api-12"},
			Need{Any: []Policy{Operate}, Service: "api"}},
		{deployv1.DeployService_WatchRollout_FullMethodName, &deployv1.WatchRolloutRequest{Id: "web-3"},
			Need{Any: []Policy{Read, Deploy, Operate}, Service: "web"}},
		{deployv1.DeployService_WatchEvents_FullMethodName, &deployv1.WatchEventsRequest{Service: "web"},
			Need{Any: []Policy{Read, Deploy, Operate}, Service: "web"}},
		{deployv1.DeployService_WatchEvents_FullMethodName, &deployv1.WatchEventsRequest{},
			Need{Any: []Policy{Read, Deploy, Operate}, Filter: true}},
		{deployv1.DeployService_ListRollouts_FullMethodName, &deployv1.ListRolloutsRequest{Service: "web"},
			Need{Any: []Policy{Read, Deploy, Operate}, Service: "web"}},
		{deployv1.DeployService_ListRollouts_FullMethodName, &deployv1.ListRolloutsRequest{},
			Need{Any: []Policy{Read, Deploy, Operate}, Filter: true}},
		{deployv1.DeployService_ListServices_FullMethodName, &deployv1.ListServicesRequest{},
			Need{Any: []Policy{Read, Deploy, Operate}, Filter: true}},
		{deployv1.DeployService_ListReleases_FullMethodName, &deployv1.ListReleasesRequest{Service: "db"},
			Need{Any: []Policy{Read, Deploy, Operate}, Service: "db"}},
		{clusterv1.ClusterService_DrainNode_FullMethodName, &clusterv1.DrainNodeRequest{Id: "n1"},
			Need{Any: []Policy{Operate}, AllServices: true}},
		{clusterv1.ClusterService_AddPeer_FullMethodName, &clusterv1.AddPeerRequest{}, Need{Any: []Policy{Admin}}},
		{clusterv1.ClusterService_GetLeader_FullMethodName, &clusterv1.GetLeaderRequest{}, Need{Public: true}},
		{clusterv1.ClusterService_ListPeers_FullMethodName, &clusterv1.ListPeersRequest{}, Need{Any: []Policy{Read}}},
		{aclv1.AclService_Bootstrap_FullMethodName, &aclv1.BootstrapRequest{}, Need{Public: true}},
		{aclv1.AclService_WhoAmI_FullMethodName, &aclv1.WhoAmIRequest{}, Need{}},
		{aclv1.AclService_CreateToken_FullMethodName, &aclv1.CreateTokenRequest{}, Need{Any: []Policy{Admin}}},
		{statev1.InternalService_Join_FullMethodName, &statev1.JoinRequest{}, Need{Internal: true}},
		{"/grpc.health.v1.Health/Check", nil, Need{Public: true}},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil, Need{Public: true}},
		{"/slipway.deploy.v1.DeployService/Future", nil, Need{Any: []Policy{Admin}}},
		{"/other.Service/Method", nil, Need{Any: []Policy{Admin}}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			tt.want.Method = tt.method
			if diff := cmp.Diff(tt.want, Required(tt.method, tt.req, ro)); diff != "" {
				t.Errorf("Required (-want +got):\n%s", diff)
			}
		})
	}
}

// Every method of the coordinator's public services has a rule: none falls
// through to the admin-only default by being forgotten.
func TestEveryMethodHasARule(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{deployv1.DeployService_ServiceDesc, clusterv1.ClusterService_ServiceDesc, aclv1.AclService_ServiceDesc} {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, m := range names {
			full := "/" + sd.ServiceName + "/" + m
			if _, ok := rules[full]; !ok {
				t.Errorf("%s has no rule", full)
			}
		}
	}
}

func TestEvaluate(t *testing.T) {
	ci := Token{Accessor: "1a2b3c4d5e6f", Description: "ci", Policies: []Policy{Deploy}, Services: []string{"web-*"}}
	ops := Token{Accessor: "99", Description: "ops", Policies: []Policy{Operate}, Services: []string{"*"}}
	opsWeb := Token{Accessor: "98", Policies: []Policy{Operate}, Services: []string{"web", "db-?"}}
	reader := Token{Accessor: "97", Description: "dash", Policies: []Policy{Read}}
	admin := Token{Accessor: "96", Policies: []Policy{Admin}}
	none := Token{Accessor: "95", Description: "empty"}
	deploy := func(svc string) Need { return Need{Any: []Policy{Deploy}, Service: svc} }
	read := func(svc string) Need { return Need{Any: []Policy{Read, Deploy, Operate}, Service: svc} }
	operate := func(svc string) Need { return Need{Any: []Policy{Operate}, Service: svc} }
	drain := Need{Any: []Policy{Operate}, AllServices: true}
	tests := []struct {
		name    string
		tok     Token
		need    Need
		wantErr string // empty: allowed
	}{
		{"deploy matching glob", ci, deploy("web-1"), ""},
		{"deploy other service", ci, deploy("api"), `token "ci" (accessor 1a2b3c4d…) lacks deploy on service "api"; it has deploy:web-*`},
		{"glob does not match the bare prefix", ci, deploy("web"), `lacks deploy on service "web"`},
		{"deploy token reads its service", ci, read("web-x"), ""},
		{"deploy token cannot read others", ci, read("api"), `lacks read or deploy or operate on service "api"`},
		{"deploy token lists (filtered)", ci, Need{Any: []Policy{Read, Deploy, Operate}, Filter: true}, ""},
		{"deploy token cannot operate", ci, operate("web-1"), `lacks operate on service "web-1"`},
		{"deploy token cannot drain", ci, drain, `lacks operate on every service ("*")`},
		{"deploy token is no admin", ci, Need{Any: []Policy{Admin}}, `lacks admin; it has deploy:web-*`},
		{"operate star drains", ops, drain, ""},
		{"operate scoped cannot drain", opsWeb, drain, `lacks operate on every service ("*"); it has operate:web,db-?`},
		{"operate exact name", opsWeb, operate("web"), ""},
		{"operate ? glob", opsWeb, operate("db-1"), ""},
		{"operate ? glob is one char", opsWeb, operate("db-10"), "lacks operate"},
		{"operate cannot deploy", ops, deploy("web"), `lacks deploy on service "web"; it has operate:*`},
		{"rollback by operate", opsWeb, Need{Any: []Policy{Deploy, Operate}, Service: "web"}, ""},
		{"read reads anything", reader, read("api"), ""},
		{"read cannot deploy", reader, deploy("api"), `token "dash" (accessor 97) lacks deploy on service "api"; it has read`},
		{"read lists peers", reader, Need{Any: []Policy{Read}}, ""},
		{"admin does anything", admin, deploy("api"), ""},
		{"admin drains", admin, drain, ""},
		{"no policy: any-token call", none, Need{}, ""},
		{"no policy: denied", none, read("web"), "it has no policy"},
		{"public", none, Need{Public: true, Any: []Policy{Admin}}, ""},
		{"no description", admin, Need{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Evaluate(tt.tok, tt.need)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Evaluate: %v, want allowed", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Evaluate allowed, want %q", tt.wantErr)
			}
			if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Evaluate = %v, want ErrPermissionDenied containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSees(t *testing.T) {
	ci := Token{Policies: []Policy{Deploy}, Services: []string{"web-*", "api"}}
	for svc, want := range map[string]bool{"web-1": true, "api": true, "api-2": false, "db": false} {
		if got := ci.Sees(svc); got != want {
			t.Errorf("Sees(%q) = %v, want %v", svc, got, want)
		}
	}
	if !(Token{Policies: []Policy{Read}}).Sees("anything") {
		t.Error("a read token must see every service")
	}
	if (Token{}).Sees("web") {
		t.Error("a token without policies sees nothing")
	}
}

func TestValidateGlobs(t *testing.T) {
	tests := []struct {
		policies []Policy
		globs    []string
		wantErr  string
	}{
		{[]Policy{Deploy}, []string{"web-*"}, ""},
		{[]Policy{Read}, nil, ""},
		{[]Policy{Admin}, nil, ""},
		{[]Policy{Deploy}, nil, "need at least one service glob"},
		{[]Policy{Operate, Read}, nil, "need at least one service glob"},
		{[]Policy{Deploy}, []string{"web-["}, `"web-[" is not a valid pattern`},
		{[]Policy{Deploy}, []string{""}, `"" is not a valid pattern`},
	}
	for _, tt := range tests {
		err := ValidateGlobs(tt.policies, tt.globs)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidateGlobs(%v, %q) = %v, want %q", tt.policies, tt.globs, err, tt.wantErr)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, s := range []string{"deploy", "Operate", " read ", "ADMIN"} {
		if _, err := ParsePolicy(s); err != nil {
			t.Errorf("ParsePolicy(%q): %v", s, err)
		}
	}
	if _, err := ParsePolicy("root"); err == nil || !strings.Contains(err.Error(), "one of deploy, operate, read, admin") {
		t.Errorf("ParsePolicy(root) = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	docs := Describe()
	if len(docs) != 4 {
		t.Fatalf("Describe: %d policies, want 4", len(docs))
	}
	var deploy []string
	for _, d := range docs {
		if d.Description == "" || len(d.Methods) == 0 {
			t.Errorf("%s: empty description or methods", d.Policy)
		}
		if d.Policy == Deploy {
			deploy = d.Methods
		}
	}
	for _, m := range []string{deployv1.DeployService_Deploy_FullMethodName, deployv1.DeployService_WatchRollout_FullMethodName} {
		if !strings.Contains(strings.Join(deploy, " "), m) {
			t.Errorf("deploy does not list %s: %v", m, deploy)
		}
	}
	if strings.Contains(strings.Join(deploy, " "), "PauseRollout") {
		t.Errorf("deploy lists PauseRollout: %v", deploy)
	}
}

func TestServiceOfRolloutID(t *testing.T) {
	for id, want := range map[string]string{"web-3": "web", "my-app-12": "my-app", "web": "web", "web-": "web-", "-3": "-3", "web-x": "web-x"} {
		if got := ServiceOfRolloutID(id); got != want {
			t.Errorf("ServiceOfRolloutID(%q) = %q, want %q", id, got, want)
		}
	}
}
