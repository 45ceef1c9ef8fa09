package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/relay"
)

// The Grafana dashboard in dist/ queries only metrics that exist, so that
// a renamed metric cannot leave it blank.
func TestDashboardQueriesOnlyMetricsThatExist(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "dist", "grafana-cosigner.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}

	reg := prometheus.NewRegistry()
	m := NewNode(reg, NodeSources{Untagged: func() uint64 { return 0 }, EventsDropped: func() uint64 { return 0 }})
	// Every vector gets a child, so that every name is gathered.
	for _, e := range []event.Event{
		event.Message{Direction: event.In, Kind: "deal"},
		event.Message{Direction: event.In, Kind: "deal", Note: "duplicate"},
		event.KeygenDone{Ceremony: "a"},
		event.Progress{Ceremony: "a", Kind: "keygen", Step: 1},
		event.Progress{Ceremony: "a", Kind: "keygen", Step: 2},
	} {
		m.observe(e)
	}
	r := NewRelay(reg, RelaySources{
		Stats:       func() (relay.Stats, error) { return relay.Stats{Serving: true}, nil },
		QueueDepths: func(func(int)) {},
	})
	r.Request("/", 404)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exist := map[string]bool{}
	for _, f := range families {
		exist[f.GetName()] = true
	}

	name := regexp.MustCompile(`cosigner_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				queried++
				base := n
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if !exist[base] {
					t.Errorf("panel %q queries %s, which no collector exports", p.Title, n)
				}
			}
		}
	}
	if queried == 0 {
		t.Fatal("the dashboard queries no cosigner metric")
	}
}
