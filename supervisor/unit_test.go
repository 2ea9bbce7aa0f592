package supervisor

import (
	"strings"
	"testing"
)

func TestServiceOf(t *testing.T) {
	tests := []struct {
		cgroup string
		want   service
		ok     bool
	}{
		{"0::/system.slice/nginx.service\n", service{name: "nginx.service"}, true},
		{"0::/user.slice/user-0.slice/user@0.service/app.slice/web.service\n", service{name: "web.service", user: true}, true},
		// A delegated unit with a sub-cgroup of its own.
		{"0::/system.slice/web.service/payload\n", service{name: "web.service"}, true},
		// cgroups v1: the name=systemd hierarchy names the unit.
		{"12:pids:/system.slice/web.service\n1:name=systemd:/system.slice/web.service\n", service{name: "web.service"}, true},
		{"0::/user.slice/user-0.slice/session-3.scope\n", service{}, false},
		{"0::/user.slice/user-0.slice/user@0.service/init.scope\n", service{}, false},
		{"0::/\n", service{}, false},
	}
	for _, tt := range tests {
		got, ok := serviceOf(tt.cgroup)
		if got != tt.want || ok != tt.ok {
			t.Errorf("serviceOf(%q) = %+v, %v; want %+v, %v", tt.cgroup, got, ok, tt.want, tt.ok)
		}
	}
}

func TestUnitAdvice(t *testing.T) {
	tests := []struct {
		show string
		want []string // substrings, in order; none when nil
	}{
		{"KillMode=mixed\nType=notify\nNotifyAccess=main\n", nil},
		{"KillMode=mixed\nType=notify-reload\nNotifyAccess=main\n", nil},
		{"KillMode=control-group\nType=notify\nNotifyAccess=main\n", []string{"KillMode=control-group", "set KillMode=mixed"}},
		{"KillMode=process\nType=notify\nNotifyAccess=main\n", []string{"KillMode=process", "KillMode=mixed"}},
		{"KillMode=mixed\nType=simple\nNotifyAccess=none\n", []string{"Type=simple", "set Type=notify", "NotifyAccess=none"}},
		{"", nil}, // systemctl said nothing useful
	}
	for _, tt := range tests {
		got := unitAdvice(tt.show, "nginx")
		if tt.want == nil {
			if got != "" {
				t.Errorf("unitAdvice(%q) = %q, want none", tt.show, got)
			}
			continue
		}
		rest := got
		for _, w := range tt.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("unitAdvice(%q) = %q, want %q in it (in order %q)", tt.show, got, w, tt.want)
				break
			}
			rest = rest[i+len(w):]
		}
	}
}

func TestWithUnitAdvice(t *testing.T) {
	l := &loop{unitAdvice: "KillMode=control-group: fix it"}
	got := l.withUnitAdvice("READY=1\nSTATUS=running: nginx (pid 3)")
	if want := "READY=1\nSTATUS=running: nginx (pid 3); WARNING: KillMode=control-group: fix it"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := l.withUnitAdvice("STATUS=draining: 3 connections left"); got != "STATUS=draining: 3 connections left" {
		t.Errorf("a stop's STATUS changed: %q", got)
	}
}
