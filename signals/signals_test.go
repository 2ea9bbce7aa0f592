package signals

import (
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    syscall.Signal
		wantErr bool
	}{
		{"QUIT", syscall.SIGQUIT, false},
		{"SIGQUIT", syscall.SIGQUIT, false},
		{"quit", syscall.SIGQUIT, false},
		{" sigterm ", syscall.SIGTERM, false},
		{"3", syscall.SIGQUIT, false},
		{"15", syscall.SIGTERM, false},
		{"WINCH", syscall.SIGWINCH, false},
		{"IOT", syscall.SIGABRT, false},
		{"", 0, true},
		{"SIG", 0, true},
		{"QUITT", 0, true},
		{"0", 0, true},
		{"99", 0, true},
		{"-3", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestNameRoundTrip(t *testing.T) {
	for name, sig := range byName {
		if got := Name(sig); got != name {
			t.Errorf("Name(%d) = %q, want %q", sig, got, name)
		}
		back, err := Parse(Name(sig))
		if err != nil || back != sig {
			t.Errorf("Parse(Name(%d)) = %d, %v", sig, back, err)
		}
	}
	if got := Name(syscall.Signal(40)); got != "40" {
		t.Errorf("Name(40) = %q, want \"40\"", got)
	}
}

func TestParseMap(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"TERM:QUIT,INT:QUIT", "INT:QUIT,TERM:QUIT", false},
		{"TERM:QUIT, HUP:HUP", "HUP:HUP,TERM:QUIT", false},
		{"sigterm:3", "TERM:QUIT", false},
		{"TERM:QUIT,TERM:QUIT", "TERM:QUIT", false},
		{"TERM:QUIT,TERM:INT", "", true},
		{"TERM", "", true},
		{"TERM:NOPE", "", true},
		{"KILL:TERM", "", true},
		{"STOP:TERM", "", true},
		{"TERM:KILL", "TERM:KILL", false},
		{"", "", true},
		{",", "", true},
	}
	for _, tt := range tests {
		m, err := ParseMap(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseMap(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && m.String() != tt.want {
			t.Errorf("ParseMap(%q) = %q, want %q", tt.in, m.String(), tt.want)
		}
	}
}

func TestMapTranslateMerge(t *testing.T) {
	p, _ := Lookup("nginx")
	m := p.Map().Merge(Map{syscall.SIGINT: syscall.SIGTERM})
	tests := []struct{ in, want syscall.Signal }{
		{syscall.SIGTERM, syscall.SIGQUIT},
		{syscall.SIGINT, syscall.SIGTERM},
		{syscall.SIGHUP, syscall.SIGHUP},
		{syscall.SIGUSR1, syscall.SIGUSR1},
		{syscall.SIGWINCH, syscall.SIGWINCH},
	}
	for _, tt := range tests {
		if got := m.Translate(tt.in); got != tt.want {
			t.Errorf("Translate(%s) = %s, want %s", Name(tt.in), Name(got), Name(tt.want))
		}
	}
}

func TestPresets(t *testing.T) {
	required := []string{"nginx", "openresty", "httpd", "haproxy", "php-fpm", "gunicorn", "unicorn",
		"puma", "caddy", "postgres", "redis", "sidekiq", "celery", "generic"}
	for _, name := range required {
		p, err := Lookup(name)
		if err != nil {
			t.Errorf("Lookup(%q): %v", name, err)
			continue
		}
		if p.Graceful == 0 || p.Fast == 0 {
			t.Errorf("preset %s: graceful %d, fast %d: both must be set", name, p.Graceful, p.Fast)
		}
	}
	if _, err := Lookup("nginxx"); err == nil {
		t.Error("Lookup(nginxx) succeeded, want error")
	}
	seen := map[string]string{}
	for _, p := range Presets() {
		for _, c := range p.Commands {
			if other, dup := seen[c]; dup {
				t.Errorf("command %q claimed by both %s and %s", c, other, p.Name)
			}
			seen[c] = p.Name
		}
	}
}

func TestPresetFacts(t *testing.T) {
	// The signals that matter most, from each daemon's documentation
	// (../shared/FACTS.md section 3).
	tests := []struct {
		name                   string
		graceful, fast, reload syscall.Signal
	}{
		{"nginx", syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP},
		{"httpd", syscall.SIGWINCH, syscall.SIGTERM, syscall.SIGUSR1},
		{"haproxy", syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGUSR2},
		{"php-fpm", syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR2},
		{"gunicorn", syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP},
		{"unicorn", syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP},
		{"postgres", syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP},
	}
	for _, tt := range tests {
		p, err := Lookup(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Graceful != tt.graceful || p.Fast != tt.fast || p.Reload != tt.reload {
			t.Errorf("%s: graceful/fast/reload = %s/%s/%s, want %s/%s/%s", tt.name,
				Name(p.Graceful), Name(p.Fast), Name(p.Reload), Name(tt.graceful), Name(tt.fast), Name(tt.reload))
		}
	}
}

func TestForCommand(t *testing.T) {
	tests := []struct {
		path   string
		want   string
		wantOK bool
	}{
		{"nginx", "nginx", true},
		{"/usr/sbin/nginx", "nginx", true},
		{"/usr/sbin/php-fpm8.2", "php-fpm", true},
		{"/usr/sbin/apache2", "httpd", true},
		{"redis-server", "redis", true},
		{"/usr/lib/postgresql/15/bin/postgres", "postgres", true},
		{"bundle", "generic", false},
		{"nginx-debug", "generic", false},
	}
	for _, tt := range tests {
		p, ok := ForCommand(tt.path)
		if p.Name != tt.want || ok != tt.wantOK {
			t.Errorf("ForCommand(%q) = %s, %v; want %s, %v", tt.path, p.Name, ok, tt.want, tt.wantOK)
		}
	}
}

func TestPresetStopSets(t *testing.T) {
	nginx, err := Lookup("nginx")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sig            syscall.Signal
		graceful, fast bool
	}{
		{syscall.SIGQUIT, true, false},
		{syscall.SIGTERM, false, true},
		{syscall.SIGINT, false, true},
		{syscall.SIGKILL, false, true},
		{syscall.SIGHUP, false, false},
		{0, false, false},
	} {
		if got := nginx.StopsGracefully(tc.sig); got != tc.graceful {
			t.Errorf("nginx.StopsGracefully(%v) = %v, want %v", tc.sig, got, tc.graceful)
		}
		if got := nginx.StopsFast(tc.sig); got != tc.fast {
			t.Errorf("nginx.StopsFast(%v) = %v, want %v", tc.sig, got, tc.fast)
		}
	}
}

func TestMapCheck(t *testing.T) {
	caught := func(s syscall.Signal) bool { return s == syscall.SIGTERM || s == syscall.SIGHUP }
	tests := []struct {
		in      string
		wantErr string
	}{
		{"TERM:QUIT,HUP:USR1", ""},
		{"ALRM:HUP", "ALRM is not a signal graceshim catches"},
		{"1:31,31:1", "SYS is not a signal graceshim catches"},
		{"URG:HUP,ALRM:HUP", "ALRM:HUP"}, // the first in signal order
	}
	for _, tt := range tests {
		m, err := ParseMap(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Check(caught)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Check(%s) = %v, want nil", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Check(%s) = %v, want an error with %q", tt.in, err, tt.wantErr)
		}
	}
}
