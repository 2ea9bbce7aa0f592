package signals

import (
	"io/fs"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestConfigTest turns the command lines users write for each daemon
// (distro units, upstream docs) into the daemon's config check.
func TestConfigTest(t *testing.T) {
	tests := []struct {
		preset string
		argv   string // split on spaces; a '|' stands for a space inside one word
		want   string
	}{
		// Debian's nginx.service and the nginx.org package.
		{"nginx", "/usr/sbin/nginx -g daemon|on;|master_process|on;", "/usr/sbin/nginx -t -q -g daemon|on;|master_process|on;"},
		{"nginx", "/usr/sbin/nginx -c /etc/nginx/nginx.conf", "/usr/sbin/nginx -t -q -c /etc/nginx/nginx.conf"},
		{"nginx", "nginx -p /srv/site -c conf/nginx.conf -g daemon|off; -e stderr", "nginx -t -q -p /srv/site -c conf/nginx.conf -g daemon|off; -e stderr"},
		{"nginx", "nginx -c/etc/alt.conf", "nginx -t -q -c/etc/alt.conf"},
		{"nginx", "nginx -s reload -c /x.conf", "nginx -t -q -c /x.conf"},
		{"openresty", "/usr/local/openresty/bin/openresty -g daemon|off;", "/usr/local/openresty/bin/openresty -t -q -g daemon|off;"},
		// Fedora's httpd.service, Debian's binary, apachectl.
		{"httpd", "/usr/sbin/httpd $OPTIONS -DFOREGROUND", "/usr/sbin/httpd -DFOREGROUND -t"},
		{"httpd", "/usr/sbin/apache2 -k start -DFOREGROUND -f /etc/apache2/apache2.conf -d /etc/apache2", "/usr/sbin/apache2 -DFOREGROUND -f /etc/apache2/apache2.conf -d /etc/apache2 -t"},
		{"httpd", "httpd -D FOREGROUND -C ServerName|x -c LogLevel|debug -E /var/log/startup.log -X", "httpd -D FOREGROUND -C ServerName|x -c LogLevel|debug -t"},
		{"httpd", "/usr/sbin/apachectl start", "/usr/sbin/apachectl -t"},
		// Debian's haproxy.service, a plain foreground run, files after --.
		{"haproxy", "/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -S /run/haproxy-master.sock", "/usr/sbin/haproxy -c -f /etc/haproxy/haproxy.cfg"},
		{"haproxy", "haproxy -db -f /etc/haproxy/a.cfg -f /etc/haproxy/conf.d -L node1", "haproxy -c -f /etc/haproxy/a.cfg -f /etc/haproxy/conf.d -L node1"},
		{"haproxy", "haproxy -W -C /etc/haproxy -sf 123 456 -- a.cfg b.cfg", "haproxy -c -C /etc/haproxy -- a.cfg b.cfg"},
		// Debian's php8.2-fpm.service, a container entry point.
		{"php-fpm", "/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config /etc/php/8.2/fpm/php-fpm.conf", "/usr/sbin/php-fpm8.2 -t --fpm-config /etc/php/8.2/fpm/php-fpm.conf"},
		{"php-fpm", "php-fpm -F -R -y /usr/local/etc/php-fpm.conf -c /usr/local/etc/php -d memory_limit=1G -g /run/fpm.pid", "php-fpm -t -R -y /usr/local/etc/php-fpm.conf -c /usr/local/etc/php -d memory_limit=1G"},
		{"php-fpm", "php-fpm --nodaemonize --fpm-config=/etc/fpm.conf -n", "php-fpm -t --fpm-config=/etc/fpm.conf -n"},
		// gunicorn's deploy docs and a config-file run.
		{"gunicorn", "/usr/bin/gunicorn -w 4 -b 127.0.0.1:8000 myapp.wsgi:application", "/usr/bin/gunicorn --check-config -w 4 -b 127.0.0.1:8000 myapp.wsgi:application"},
		{"gunicorn", "gunicorn -c /etc/gunicorn.conf.py app:app", "gunicorn --check-config -c /etc/gunicorn.conf.py app:app"},
		// Debian's unicorn.service; a rackup given.
		{"unicorn", "/usr/bin/unicorn -c /etc/unicorn/app.rb -E production", "UNICORN config /etc/unicorn/app.rb app? config.ru"},
		{"unicorn", "unicorn -E production -c config/unicorn.rb -l 0.0.0.0:8080 site.ru", "UNICORN config config/unicorn.rb app site.ru"},
		{"unicorn", "unicorn_rails --config-file=/srv/u.rb", "UNICORN config /srv/u.rb app? config.ru"},
		// puma's systemd.md, a bare run, -C -.
		{"puma", "/usr/bin/puma -C /srv/app/config/puma.rb", "PUMA -C /srv/app/config/puma.rb"},
		{"puma", "puma -b tcp://127.0.0.1:9292 -t 2:4 -w 2 app.ru", "PUMA app.ru"},
		{"puma", "puma -C - --bind unix:///run/p.sock", "PUMA -C -"},
		{"puma", "puma --config=/srv/p.rb -e production", "PUMA -C /srv/p.rb"},
		// Debian's caddy.service; Go-style single dash; the default Caddyfile.
		{"caddy", "/usr/bin/caddy run --environ --config /etc/caddy/Caddyfile", "/usr/bin/caddy validate --config /etc/caddy/Caddyfile"},
		{"caddy", "caddy run -config=/etc/caddy/caddy.json -adapter json --resume", "caddy validate --config /etc/caddy/caddy.json --adapter json"},
		{"caddy", "caddy run", "caddy validate"},
		// Debian's uwsgi-app@.service runs --ini; a command-line app.
		{"uwsgi", "/usr/bin/uwsgi --ini /etc/uwsgi/apps-enabled/app.ini", "UWSGI /usr/bin/uwsgi --ini /etc/uwsgi/apps-enabled/app.ini"},
		{"uwsgi", "uwsgi --strict --http-socket :8000 --wsgi-file app.py --master", "UWSGI uwsgi --strict --http-socket :8000 --wsgi-file app.py --master"},
		// Debian's lighttpd.service.
		{"lighttpd", "/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf", "/usr/sbin/lighttpd -tt -f /etc/lighttpd/lighttpd.conf"},
		{"lighttpd", "lighttpd -D -f /srv/l.conf -m /usr/lib/lighttpd -i 30", "lighttpd -tt -f /srv/l.conf -m /usr/lib/lighttpd"},
	}
	for _, tt := range tests {
		p, err := Lookup(tt.preset)
		if err != nil {
			t.Fatal(err)
		}
		if p.ConfigTest == nil {
			t.Errorf("%s: no ConfigTest", tt.preset)
			continue
		}
		got := p.ConfigTest(words(tt.argv))
		if want := words(tt.want); !reflect.DeepEqual(got, want) {
			t.Errorf("%s ConfigTest(%q)\n got %q\nwant %q", tt.preset, tt.argv, got, want)
		}
	}
}

// words splits s on spaces and turns '|' back into spaces; a first word
// UNICORN, PUMA and UWSGI stand for the interpreter words of
// unicornConfigTest, pumaConfigTest and uwsgiConfigTest.
func words(s string) []string {
	f := strings.Fields(s)
	for i := range f {
		f[i] = strings.ReplaceAll(f[i], "|", " ")
	}
	if len(f) > 0 && f[0] == "PUMA" {
		f = append([]string{"ruby", "-e", pumaCheck, "--"}, f[1:]...)
	}
	if len(f) > 0 && f[0] == "UWSGI" {
		f = append([]string{"sh", "-c", uwsgiCheck, "uwsgi-config-test"}, f[1:]...)
	}
	if len(f) > 0 && f[0] == "UNICORN" {
		f = append([]string{"ruby", "-e", unicornCheck, "--"}, f[1:]...)
	}
	return f
}

func TestCaddyReloadCommand(t *testing.T) {
	p, _ := Lookup("caddy")
	if p.Reload != 0 {
		t.Errorf("caddy Reload = %s: Caddy 2 does not implement a reload signal", Name(p.Reload))
	}
	tests := []struct{ argv, want string }{
		{"/usr/bin/caddy run --environ --config /etc/caddy/Caddyfile", "/usr/bin/caddy reload --config /etc/caddy/Caddyfile --force"},
		{"caddy run --config=/srv/c.json --adapter=json", "caddy reload --config /srv/c.json --adapter json --force"},
		{"caddy run", "caddy reload --force"},
	}
	for _, tt := range tests {
		if got, want := p.ReloadCommand(words(tt.argv)), words(tt.want); !reflect.DeepEqual(got, want) {
			t.Errorf("ReloadCommand(%q)\n got %q\nwant %q", tt.argv, got, want)
		}
	}
}

// TestConfigTestEmptyArgv: no command, no check (never a panic).
func TestConfigTestEmptyArgv(t *testing.T) {
	for _, p := range Presets() {
		if p.ConfigTest != nil && p.ConfigTest(nil) != nil {
			t.Errorf("%s: ConfigTest(nil) = %q, want nil", p.Name, p.ConfigTest(nil))
		}
		if p.ReloadCommand != nil && p.ReloadCommand(nil) != nil {
			t.Errorf("%s: ReloadCommand(nil) = %q, want nil", p.Name, p.ReloadCommand(nil))
		}
	}
}

// TestPresetFacts pins the facts each daemon's documentation states (see
// the citations in presets.go) so a change to one is a deliberate one.
func TestPresetDocumentedFacts(t *testing.T) {
	type facts struct {
		graceful, fast, reload, upgrade syscall.Signal
		notify, configTest              bool
	}
	want := map[string]facts{
		"nginx":     {syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2, false, true},
		"httpd":     {syscall.SIGWINCH, syscall.SIGTERM, syscall.SIGUSR1, 0, false, true},
		"haproxy":   {syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGUSR2, 0, true, true},
		"php-fpm":   {syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR2, 0, true, true},
		"gunicorn":  {syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2, true, true},
		"unicorn":   {syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2, false, true},
		"puma":      {syscall.SIGTERM, syscall.SIGKILL, syscall.SIGUSR2, 0, true, true},
		"uwsgi":     {syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, 0, true, true},
		"caddy":     {syscall.SIGTERM, syscall.SIGQUIT, 0, 0, true, true},
		"lighttpd":  {syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, 0, false, true},
		"redis":     {syscall.SIGTERM, syscall.SIGINT, 0, 0, true, false},
		"memcached": {syscall.SIGTERM, syscall.SIGTERM, 0, 0, false, false},
	}
	for name, w := range want {
		p, err := Lookup(name)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		got := facts{p.Graceful, p.Fast, p.Reload, p.Upgrade, p.NativeNotify, p.ConfigTest != nil}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
		if p.Notes == "" {
			t.Errorf("%s: no Notes", name)
		}
	}
	// Facts that live in Notes because no field carries them.
	for name, phrase := range map[string]string{
		"php-fpm":   "process_control_timeout",
		"uwsgi":     "gracefully_kill_them_all",
		"memcached": "no graceful stop",
		"caddy":     "caddy reload",
		"lighttpd":  "HUP only reopens logs",
	} {
		if p, _ := Lookup(name); !strings.Contains(p.Notes, phrase) {
			t.Errorf("%s Notes %q do not say %q", name, p.Notes, phrase)
		}
	}
}

// TestConfigTestLimit: a preset whose config test cannot see a broken
// application says so (graceshim repeats it at start and on reload).
func TestConfigTestLimit(t *testing.T) {
	for _, p := range Presets() {
		if p.ConfigTestLimit != "" && p.ConfigTest == nil {
			t.Errorf("%s: ConfigTestLimit without a ConfigTest", p.Name)
		}
	}
	p, _ := Lookup("uwsgi")
	for _, phrase := range []string{"lazy-apps", "strict = true"} {
		if !strings.Contains(p.ConfigTestLimit, phrase) {
			t.Errorf("uwsgi ConfigTestLimit %q does not say %q", p.ConfigTestLimit, phrase)
		}
	}
}

// TestStopSignals: the other signals each daemon documents as a stop.
func TestStopSignals(t *testing.T) {
	tests := []struct {
		preset         string
		sig            syscall.Signal
		graceful, fast bool
	}{
		{"nginx", syscall.SIGINT, false, true},
		{"nginx", syscall.SIGQUIT, true, false},
		{"lighttpd", syscall.SIGINT, true, false},
		{"lighttpd", syscall.SIGTERM, false, true},
		{"lighttpd", syscall.SIGHUP, false, false},
		{"puma", syscall.SIGINT, true, false},
		{"caddy", syscall.SIGINT, true, false},
		{"uwsgi", syscall.SIGQUIT, false, true},
		{"gunicorn", syscall.SIGQUIT, false, true},
		{"redis", syscall.SIGINT, true, false},
		{"memcached", syscall.SIGINT, false, true},
		{"memcached", syscall.SIGTERM, true, false},
		{"httpd", syscall.SIGHUP, false, false},
	}
	for _, tt := range tests {
		p, _ := Lookup(tt.preset)
		if g := p.StopsGracefully(tt.sig); g != tt.graceful {
			t.Errorf("%s StopsGracefully(%s) = %v", tt.preset, Name(tt.sig), g)
		}
		if f := p.StopsFast(tt.sig); f != tt.fast {
			t.Errorf("%s StopsFast(%s) = %v", tt.preset, Name(tt.sig), f)
		}
	}
}

func TestForCommandDistroNames(t *testing.T) {
	for path, want := range map[string]string{
		"/usr/sbin/php-fpm8.2":   "php-fpm",
		"/usr/bin/uwsgi_python3": "uwsgi",
		"/usr/bin/uwsgi":         "uwsgi",
		"/usr/sbin/lighttpd":     "lighttpd",
		"/usr/bin/memcached":     "memcached",
		"/usr/bin/gunicorn3":     "gunicorn",
		"/usr/sbin/apache2":      "httpd",
		"/usr/bin/caddy":         "caddy",
		"/usr/bin/redis-server":  "redis",
		"/usr/bin/unicorn_rails": "unicorn",
		"/usr/local/bin/puma":    "puma",
		"/usr/sbin/haproxy":      "haproxy",
		"/usr/sbin/nginx":        "nginx",
	} {
		p, ok := ForCommand(path)
		if !ok || p.Name != want {
			t.Errorf("ForCommand(%s) = %s, %v; want %s", path, p.Name, ok, want)
		}
	}
}

func TestPresetRuns(t *testing.T) {
	nginx, _ := Lookup("nginx")
	php, _ := Lookup("php-fpm")
	for _, tc := range []struct {
		p    Preset
		path string
		want bool
	}{
		{nginx, "/usr/sbin/nginx", true},
		{nginx, "nginx", true},
		{nginx, "/docker-entrypoint.sh", false},
		{nginx, "/usr/bin/env", false},
		{php, "/usr/sbin/php-fpm8.2", true},
		{php, "/usr/sbin/php8.2", false},
	} {
		if got := tc.p.Runs(tc.path); got != tc.want {
			t.Errorf("%s.Runs(%q) = %v, want %v", tc.p.Name, tc.path, got, tc.want)
		}
	}
}

func TestPHPFPMCaveat(t *testing.T) {
	p, _ := Lookup("php-fpm")
	files := map[string]string{
		"/etc/php/8.2/fpm/php-fpm.conf": "[global]\npid = /run/php/php8.2-fpm.pid\n;process_control_timeout = 0\n",
		"/srv/fpm-30s.conf":             "[global]\nprocess_control_timeout = 30s\n",
		"/srv/fpm-0.conf":               "[global]\nprocess_control_timeout = 0\n",
	}
	read := func(path string) ([]byte, error) {
		if s, ok := files[path]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	for _, tc := range []struct {
		argv []string
		want string // in the caveat; "" for none
	}{
		{[]string{"/usr/sbin/php-fpm8.2", "--nodaemonize", "--fpm-config", "/etc/php/8.2/fpm/php-fpm.conf"}, "/etc/php/8.2/fpm/php-fpm.conf (the default)"},
		{[]string{"/usr/sbin/php-fpm8.2", "--nodaemonize"}, "process_control_timeout is 0"},
		{[]string{"/usr/sbin/php-fpm8.2", "-y", "/srv/fpm-30s.conf"}, ""},
		{[]string{"/usr/sbin/php-fpm8.2", "--fpm-config=/srv/fpm-0.conf"}, "/srv/fpm-0.conf"},
		{[]string{"/usr/sbin/php-fpm", "-F"}, ""}, // /etc/php-fpm.conf cannot be read: nothing said
	} {
		got := p.Caveat(tc.argv, read)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Caveat(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func TestUwsgiSocketsCaveat(t *testing.T) {
	p, err := Lookup("uwsgi")
	if err != nil || p.SocketsCaveat == nil {
		t.Fatalf("uwsgi preset has no SocketsCaveat (%v)", err)
	}
	for _, tt := range []struct {
		argv []string
		want bool
	}{
		{[]string{"uwsgi", "--master", "--http-socket", "127.0.0.1:80", "--wsgi-file", "app.py"}, true},
		{[]string{"uwsgi", "--http-socket=127.0.0.1:80"}, true},
		{[]string{"uwsgi", "--http-socket", "127.0.0.1:80", "--protocol", "http"}, false},
		{[]string{"uwsgi", "--http-socket", ":80", "--protocol=http"}, false},
		{[]string{"uwsgi", "--socket", "/run/app.sock"}, false},
		{[]string{"uwsgi", "--ini", "app.ini"}, false},
	} {
		if got := p.SocketsCaveat(tt.argv) != ""; got != tt.want {
			t.Errorf("SocketsCaveat(%q) says something: %v, want %v", tt.argv, got, tt.want)
		}
	}
}
