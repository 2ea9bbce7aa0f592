package e2e

// The units Debian 12's packages ship for nginx, apache2, php8.2-fpm,
// haproxy and redis-server, converted by graceshim unit --from and run
// under the real systemd user manager with the real daemons: the converted
// unit starts, serves, reloads a good configuration, refuses a broken one
// while the daemon keeps serving, and stops with Result=success.
//
// Each test reads the shipped unit from /lib/systemd/system and changes
// only what points it at the system's own instance (configuration path,
// pid file, port), so that it does not collide with anything else on the
// machine; each change is named where it is made.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shippedUnit reads /lib/systemd/system/NAME.service and skips the test
// when the package is not installed (CI installs it: .ci/install-deps).
func shippedUnit(t *testing.T, name, bin string) string {
	t.Helper()
	path := "/lib/systemd/system/" + name + ".service"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("%s is not installed: %v", path, err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s is not installed: %v", bin, err)
	}
	return string(data)
}

// replaceAll replaces old with new in s and fails when old is not there:
// a shipped unit that changed shape must not pass unnoticed.
func replaceAll(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the shipped unit no longer contains %q:\n%s", old, s)
	}
	return strings.ReplaceAll(s, old, new)
}

// dropLines returns unit without the lines that begin with any of
// prefixes: the settings a root user manager here cannot give a shipped
// unit.
func dropLines(unit string, prefixes ...string) string {
	var kept []string
	for _, l := range strings.Split(unit, "\n") {
		drop := false
		for _, p := range prefixes {
			drop = drop || strings.HasPrefix(l, p)
		}
		if !drop {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

// graceshimOutsideTmp makes t.TempDir live outside /tmp (siteOutsideTmp)
// and returns a dir there, open to all, with a copy of graceshim in it:
// a unit with PrivateTmp=true sees neither graceshim nor a daemon's
// configuration under the host's /tmp.
func graceshimOutsideTmp(t *testing.T) (dir, bin string) {
	t.Helper()
	siteOutsideTmp(t)
	bin = needGraceshim(t)
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, copyFile(t, bin, filepath.Join(dir, "graceshim"))
}

// convertUnit writes unit to DIR/file and runs graceshim unit --from on
// it for Debian 12's systemd, with graceshim at bin (and more flags, such
// as --dropin).
func convertUnit(t *testing.T, bin, file, unit string, flags ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustUnit(t, append([]string{"--systemd-version=252", "--graceshim", bin, "--from", path}, flags...)...)
	if strings.Contains(out, "\nExecReload=/bin/kill") {
		t.Fatalf("a kill reload survived the conversion:\n%s", out)
	}
	return out
}

// reloadSupported says whether this graceshim has the reload command the
// converted units call (graceshim reload PID). Without it every
// systemctl reload of a converted unit fails, and the good-reload half of
// these tests is skipped with that reason.
func reloadSupported(t *testing.T) bool {
	t.Helper()
	_, errOut, code := graceshimCmd(t, "reload", "--help")
	return code == 0 && !strings.Contains(errOut, "command not found")
}

// daemonCase is one daemon's part of the shared flow.
type daemonCase struct {
	// unit is the converted unit to install; instance, when set, is the
	// unit to start (a template's instance). dropin, when set, is
	// installed as NAME.d/graceshim.conf beside unit (then the shipped
	// unit itself).
	unit, instance, dropin string
	// get returns what the daemon serves now (a body, a ping reply).
	get func() (string, error)
	// write writes the daemon's configuration serving marker, or a broken
	// one when marker is "".
	write func(marker string)
}

// runConverted starts the converted unit, checks it serves "v1", reloads
// to "v2", fails a reload of a broken configuration while "v2" stays
// served by the same main process, and stops it with Result=success.
func runConverted(t *testing.T, u *userSystemd, name string, c daemonCase) {
	t.Helper()
	start := name
	if c.dropin != "" {
		// Before the unit: the manager reads the drop-in when it first
		// loads the unit, so no daemon-reload is needed.
		d := filepath.Join(u.unitDir, name+".d")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		writeFile(t, filepath.Join(d, "graceshim.conf"), c.dropin)
	}
	if c.instance != "" {
		start = c.instance
		installTemplate(t, u, name, c.instance, c.unit)
	} else {
		u.InstallUnit(t, name, c.unit)
	}
	u.Start(t, start)
	serves := func(want string) bool {
		return waitFor(20*time.Second, 50*time.Millisecond, func() bool {
			got, err := c.get()
			return err == nil && strings.TrimSpace(got) == want
		})
	}
	if !serves("v1") {
		got, err := c.get()
		t.Fatalf("does not serve v1 (got %q, %v)\n%s\n%s", got, err, u.Status(t, start), u.UnitLog(t, start))
	}
	pid := u.MainPID(t, start)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != "graceshim" {
		t.Fatalf("the unit's main process %d is %q (%v), not graceshim", pid, exe, err)
	}
	want := "v1"
	t.Run("reload", func(t *testing.T) {
		if !reloadSupported(t) {
			t.Skip("this graceshim has no reload command yet (graceshim reload PID): systemctl reload of a converted unit cannot work")
		}
		c.write("v2")
		if out, err := u.systemctl("reload", start); err != nil {
			t.Fatalf("systemctl reload with a good configuration: %v\n%s\n%s", err, out, u.UnitLog(t, start))
		}
		if !serves("v2") {
			t.Fatalf("does not serve v2 after the reload\n%s", u.UnitLog(t, start))
		}
		want = "v2"
	})
	t.Run("broken-reload", func(t *testing.T) {
		c.write("")
		out, err := u.systemctl("reload", start)
		if err == nil {
			t.Errorf("systemctl reload of a broken configuration succeeded:\n%s", out)
		}
		got, gerr := c.get()
		if gerr != nil || strings.TrimSpace(got) != want {
			t.Errorf("after the failed reload the daemon serves %q (%v), want %q\n%s\n%s", got, gerr, want, u.Status(t, start), u.UnitLog(t, start))
		}
		if now := u.MainPID(t, start); now != pid || u.Show(t, start, "ActiveState") != "active" {
			t.Errorf("after the failed reload: main pid %d (was %d), state %s", now, pid, u.Show(t, start, "ActiveState"))
		}
	})
	u.Stop(t, start)
	if r := u.Show(t, start, "Result"); r != "success" {
		t.Errorf("Result=%s after stop, want success\n%s", r, u.UnitLog(t, start))
	}
}

// installTemplate writes a template unit (NAME@.service) for the user
// manager; InstallUnit's properties and stop need a unit, not a template.
// Its output goes to a log file UnitLog finds under the instance's name.
func installTemplate(t *testing.T, u *userSystemd, name, instance, content string) {
	t.Helper()
	logPath := filepath.Join(u.logDir, instance+".log")
	content = addToSection(content, "Service", "StandardOutput=append:"+logPath+"\nStandardError=append:"+logPath)
	u.mu.Lock()
	u.logs[instance] = logPath
	u.mu.Unlock()
	path := filepath.Join(u.unitDir, name)
	writeFile(t, path, content)
	t.Cleanup(func() {
		u.stop(instance)
		u.systemctl("reset-failed", instance)
		os.Remove(path)
	})
}

// bodyOf GETs url and returns its body; a status other than 200 is an error.
func bodyOf(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return string(b), err
}

// TestE2EConvertedDebianNginx: Debian's nginx.service (nginx daemonizes,
// graceshim follows it through the pid file).
func TestE2EConvertedDebianNginx(t *testing.T) {
	orig := shippedUnit(t, "nginx", "/usr/sbin/nginx")
	bin := needGraceshim(t)
	u := userManager(t)
	dir := t.TempDir()
	port := freePort(t)
	conf, pidFile := filepath.Join(dir, "nginx.conf"), filepath.Join(dir, "nginx.pid")
	write := func(marker string) {
		body := fmt.Sprintf("return 200 %q;", marker+"\n")
		if marker == "" {
			body = "no_such_directive on;"
		}
		writeFile(t, conf, fmt.Sprintf("pid %s;\nerror_log %s/error.log;\nevents {}\nhttp {\n access_log off;\n server {\n  listen 127.0.0.1:%d;\n  location / { %s }\n }\n}\n",
			pidFile, dir, port, body))
	}
	write("v1")
	// The test's own configuration and pid file instead of the system's.
	unit := replaceAll(t, orig, "/usr/sbin/nginx ", "/usr/sbin/nginx -c "+conf+" ")
	unit = replaceAll(t, unit, "/run/nginx.pid", pidFile)
	get := func() (string, error) { return bodyOf(fmt.Sprintf("http://127.0.0.1:%d/", port)) }
	t.Run("unit", func(t *testing.T) {
		write("v1")
		conv := convertUnit(t, bin, "nginx.service", unit)
		for _, want := range []string{"--pidfile=" + pidFile + " -- /usr/sbin/nginx", "\nExecReload=" + bin + " reload $MAINPID\n"} {
			if !strings.Contains(conv, want) {
				t.Fatalf("converted unit lacks %q:\n%s", want, conv)
			}
		}
		runConverted(t, u, unitName("deb-nginx"), daemonCase{unit: conv, write: write, get: get})
	})
	// The drop-in README.md recommends, over the shipped unit.
	t.Run("dropin", func(t *testing.T) {
		write("v1")
		dropin := convertUnit(t, bin, "nginx.service", unit, "--dropin")
		runConverted(t, u, unitName("deb-nginx-dropin"), daemonCase{unit: unit, dropin: dropin, write: write, get: get})
	})
}

// TestE2EConvertedDebianApache runs Debian's apache2@.service, the
// instance form, so that the test's Apache has a configuration directory,
// pid file and log directory of its own (/etc/apache2-NAME,
// /run/apache2-NAME, /var/log/apache2-NAME, per /etc/apache2/envvars).
// Its reload keeps apachectl graceful's config test.
func TestE2EConvertedDebianApache(t *testing.T) {
	orig := shippedUnit(t, "apache2@", "/usr/sbin/apache2")
	siteOutsideTmp(t) // PrivateTmp=true hides /tmp, graceshim's build dir
	u := userManager(t)
	binDir := t.TempDir()
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := copyFile(t, needGraceshim(t), filepath.Join(binDir, "graceshim"))
	inst := fmt.Sprintf("ge2e%d", os.Getpid())
	confDir := "/etc/apache2-" + inst
	logDir := "/var/log/apache2-" + inst
	for _, d := range []string{confDir, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	t.Cleanup(func() { os.RemoveAll("/run/apache2-" + inst) })
	envvars, err := os.ReadFile("/etc/apache2/envvars")
	if err != nil {
		t.Skipf("no /etc/apache2/envvars: %v", err)
	}
	writeFile(t, filepath.Join(confDir, "envvars"), string(envvars))
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(confDir, v), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(confDir, v, "index.html"), v+"\n")
	}
	port := freePort(t)
	write := func(marker string) {
		root := filepath.Join(confDir, marker)
		extra := ""
		if marker == "" {
			root, extra = filepath.Join(confDir, "v1"), "NoSuchDirective on\n"
		}
		writeFile(t, filepath.Join(confDir, "apache2.conf"), fmt.Sprintf(`DefaultRuntimeDir ${APACHE_RUN_DIR}
PidFile ${APACHE_PID_FILE}
Mutex file:${APACHE_LOCK_DIR} default
User ${APACHE_RUN_USER}
Group ${APACHE_RUN_GROUP}
ErrorLog ${APACHE_LOG_DIR}/error.log
IncludeOptional /etc/apache2/mods-enabled/*.load
IncludeOptional /etc/apache2/mods-enabled/*.conf
ServerName localhost
Listen 127.0.0.1:%d
DocumentRoot %s
<Directory %s>
	Require all granted
</Directory>
%s`, port, root, confDir, extra))
	}
	write("v1")
	conv := convertUnit(t, bin, "apache2@.service", orig)
	for _, want := range []string{"--pidfile=/run/apache2-%i/apache2.pid -- /usr/sbin/apachectl start", "\nExecReload=/usr/sbin/apachectl configtest\nExecReload=" + bin + " reload $MAINPID\n"} {
		if !strings.Contains(conv, want) {
			t.Fatalf("converted unit lacks %q:\n%s", want, conv)
		}
	}
	name := fmt.Sprintf("graceshim-e2e-apache2-%d@.service", os.Getpid())
	runConverted(t, u, name, daemonCase{unit: conv, instance: strings.Replace(name, "@", "@"+inst, 1), write: write,
		get: func() (string, error) { return bodyOf(fmt.Sprintf("http://127.0.0.1:%d/", port)) }})
}

// TestE2EConvertedDebianPHPFPM: Debian's php8.2-fpm.service (Type=notify,
// USR2 reload). A broken configuration must not reach php-fpm: USR2 makes
// its master re-execute and exit on a configuration it cannot load.
func TestE2EConvertedDebianPHPFPM(t *testing.T) {
	orig := shippedUnit(t, "php8.2-fpm", "/usr/sbin/php-fpm8.2")
	bin := needGraceshim(t)
	u := userManager(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "php-fpm.conf")
	write := func(marker string) {
		pool := "ping.response = " + marker
		if marker == "" {
			pool = "ping.response = v1\nthis is not a setting"
		}
		writeFile(t, conf, fmt.Sprintf(`[global]
pid = %s/php-fpm.pid
error_log = %s/error.log
process_control_timeout = 10s
[www]
user = www-data
group = www-data
listen = 127.0.0.1:%d
pm = static
pm.max_children = 2
ping.path = /ping
%s
`, dir, dir, port, pool))
	}
	write("v1")
	// The test's own configuration; the socket helper lines go, they
	// would point the system's /run/php/php-fpm.sock at this pool.
	unit := replaceAll(t, orig, "/etc/php/8.2/fpm/php-fpm.conf", conf)
	var kept []string
	for _, l := range strings.Split(unit, "\n") {
		if !strings.Contains(l, "php-fpm-socket-helper") {
			kept = append(kept, l)
		}
	}
	conv := convertUnit(t, bin, "php8.2-fpm.service", strings.Join(kept, "\n"))
	if !strings.Contains(conv, "\nExecReload="+bin+" reload $MAINPID\n") {
		t.Fatalf("converted unit does not reload through graceshim:\n%s", conv)
	}
	runConverted(t, u, unitName("deb-php-fpm"), daemonCase{unit: conv, write: write,
		get: func() (string, error) { return fcgiPing(fmt.Sprintf("127.0.0.1:%d", port), "/ping") }})
}

// TestE2EConvertedDebianHAProxy: Debian's haproxy.service (master-worker
// with -Ws, a config check before the reload signal).
func TestE2EConvertedDebianHAProxy(t *testing.T) {
	orig := shippedUnit(t, "haproxy", "/usr/sbin/haproxy")
	bin := needGraceshim(t)
	u := userManager(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "haproxy.cfg")
	write := func(marker string) {
		rule := fmt.Sprintf("http-request return status 200 content-type text/plain string %q", marker)
		if marker == "" {
			rule = "http-request return status 200 content-type text/plain string \"v1\"\n  no_such_keyword here"
		}
		writeFile(t, cfg, fmt.Sprintf("defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:%d\n  %s\n", port, rule))
	}
	write("v1")
	// The test's own configuration, pid file and master socket. /dev/log
	// is optional here ('-'): machines without a syslog socket (this
	// test's) could not set up the shipped bind mount at all.
	unit := replaceAll(t, orig, "CONFIG=/etc/haproxy/haproxy.cfg", "CONFIG="+cfg)
	unit = replaceAll(t, unit, "PIDFILE=/run/haproxy.pid", "PIDFILE="+filepath.Join(dir, "haproxy.pid"))
	unit = replaceAll(t, unit, "-S /run/haproxy-master.sock", "-S "+filepath.Join(dir, "master.sock"))
	unit = replaceAll(t, unit, "BindReadOnlyPaths=/dev/log", "BindReadOnlyPaths=-/dev/log")
	conv := convertUnit(t, bin, "haproxy.service", unit)
	if !strings.Contains(conv, " -c -q $EXTRAOPTS\nExecReload="+bin+" reload $MAINPID\n") {
		t.Fatalf("converted unit does not check the configuration, then reload through graceshim:\n%s", conv)
	}
	runConverted(t, u, unitName("deb-haproxy"), daemonCase{unit: conv, write: write,
		get: func() (string, error) { return bodyOf(fmt.Sprintf("http://127.0.0.1:%d/", port)) }})
}

// TestE2EConvertedDebianRedis: Debian's redis-server.service, sandbox and
// all: NoExecPaths=/ with ExecPaths= of redis only (the conversion adds
// graceshim's path, else 203/EXEC), TimeoutStopSec=0 kept, no reload
// (redis has none). The stop saves the data set.
func TestE2EConvertedDebianRedis(t *testing.T) {
	orig := shippedUnit(t, "redis-server", "/usr/bin/redis-server")
	dir, bin := graceshimOutsideTmp(t) // PrivateTmp=true: graceshim and the config must not be in /tmp
	u := userManager(t)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "redis.conf")
	writeFile(t, conf, fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\ndbfilename dump.rdb\nsave 3600 1\nlogfile \"\"\n", port, data))
	unit := replaceAll(t, orig, "/etc/redis/redis.conf", conf)
	// What a root user manager in a container (this test's) cannot give
	// the shipped unit, measured here: the unconverted unit fails with
	// 226/NAMESPACE until ProtectKernelTunables=, ProtectKernelLogs= and
	// ProtectHome= go; the converted unit then gets no READY=1 through
	// (graceshim: "dial unixgram /run/user/0/systemd/notify: no such
	// file or directory") until ProtectProc=, ProtectControlGroups= and
	// User=/Group= go as well: the user manager's notify socket is in
	// root's 0700 /run/user/0, where a system manager's is
	// /run/systemd/notify. Those go, and redis writes its data set where
	// a ReadWritePaths= line lets it. The rest of the sandbox stays:
	// NoExecPaths=/ with ExecPaths=, ProtectSystem=strict, PrivateTmp=,
	// PrivateUsers=, RestrictAddressFamilies=, SystemCallFilter=,
	// CapabilityBoundingSet=.
	var kept []string
	for _, l := range strings.Split(unit, "\n") {
		drop := false
		for _, p := range []string{"ProtectKernelTunables=", "ProtectKernelLogs=", "ProtectHome=", "ProtectProc=", "ProtectControlGroups=", "User=", "Group="} {
			drop = drop || strings.HasPrefix(l, p)
		}
		if !drop {
			kept = append(kept, l)
		}
		if strings.HasPrefix(l, "ReadWritePaths=-/var/lib/redis") {
			kept = append(kept, "ReadWritePaths="+data)
		}
	}
	conv := convertUnit(t, bin, "redis-server.service", strings.Join(kept, "\n"))
	for _, want := range []string{"\nExecPaths=" + bin + "\n", "\nTimeoutStopSec=0\n", "--supervised systemd"} {
		if !strings.Contains(conv, want) {
			t.Fatalf("converted unit lacks %q:\n%s", want, conv)
		}
	}
	if strings.Contains(conv, "\nExecReload=") {
		t.Fatalf("redis has no reload, but the converted unit has one:\n%s", conv)
	}
	name := unitName("deb-redis")
	u.InstallUnit(t, name, conv)
	u.Start(t, name)
	cli := func(args ...string) (string, error) {
		out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port)}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	needCmd(t, "redis-cli")
	if !waitFor(20*time.Second, 50*time.Millisecond, func() bool { out, err := cli("ping"); return err == nil && out == "PONG" }) {
		t.Fatalf("redis does not answer\n%s\n%s", u.Status(t, name), u.UnitLog(t, name))
	}
	if out, err := cli("set", "graceshim", "kept"); err != nil || out != "OK" {
		t.Fatalf("redis set: %q %v", out, err)
	}
	u.Stop(t, name)
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s after stop, want success\n%s", r, u.UnitLog(t, name))
	}
	// TERM is redis's graceful stop: it saves before it exits.
	if fi, err := os.Stat(filepath.Join(data, "dump.rdb")); err != nil || fi.Size() == 0 {
		t.Errorf("no data set saved on stop: %v\n%s", err, u.UnitLog(t, name))
	}
}

// fcgiPing sends php-fpm one FastCGI GET for path (its ping.path) and
// returns the response body: the FastCGI records of the spec
// (fastcgi-archives.github.io/FastCGI_Specification.html), with the
// headers php-fpm needs to route the request.
func fcgiPing(addr, path string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	record := func(typ byte, content []byte) []byte {
		h := []byte{1, typ, 0, 1, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(h[4:], uint16(len(content)))
		return append(h, content...)
	}
	var params []byte
	for _, kv := range [][2]string{{"SCRIPT_NAME", path}, {"SCRIPT_FILENAME", path}, {"REQUEST_METHOD", "GET"}, {"SERVER_PROTOCOL", "HTTP/1.1"}} {
		params = append(params, byte(len(kv[0])), byte(len(kv[1])))
		params = append(params, kv[0]+kv[1]...)
	}
	var req []byte
	req = append(req, record(1, []byte{0, 1, 0, 0, 0, 0, 0, 0})...) // BEGIN_REQUEST, responder
	req = append(req, record(4, params)...)
	req = append(req, record(4, nil)...)
	req = append(req, record(5, nil)...)
	if _, err := conn.Write(req); err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	for {
		h := make([]byte, 8)
		if _, err := io.ReadFull(conn, h); err != nil {
			return "", err
		}
		n, pad := int(binary.BigEndian.Uint16(h[4:])), int(h[6])
		body := make([]byte, n+pad)
		if _, err := io.ReadFull(conn, body); err != nil {
			return "", err
		}
		switch h[1] {
		case 6: // STDOUT
			stdout.Write(body[:n])
		case 3: // END_REQUEST
			_, rest, ok := bytes.Cut(stdout.Bytes(), []byte("\r\n\r\n"))
			if !ok {
				return "", errors.New("no header end in the FastCGI response")
			}
			return string(rest), nil
		}
	}
}

// TestE2EConvertedDebianMemcached: Debian's memcached.service runs
// memcached through systemd-memcached-wrapper, which execs it with the
// options of the file it is given. The converted unit runs it with
// --preset=memcached, so graceshim says it has no graceful stop instead
// of promising a drain; it starts, serves, and stops with
// Result=success, its client connection closed at the stop.
func TestE2EConvertedDebianMemcached(t *testing.T) {
	orig := shippedUnit(t, "memcached", "/usr/bin/memcached")
	wrapper := "/usr/share/memcached/scripts/systemd-memcached-wrapper"
	if _, err := os.Stat(wrapper); err != nil {
		t.Skipf("%s is not installed: %v", wrapper, err)
	}
	dir, bin := graceshimOutsideTmp(t) // PrivateTmp=true: graceshim and the config must not be in /tmp
	u := userManager(t)
	port := freePort(t)
	conf := filepath.Join(dir, "memcached.conf")
	// The wrapper reads options one per line (its own parser: "-x value").
	writeFile(t, conf, fmt.Sprintf("-m 16\n-p %d\n-U 0\n-l 127.0.0.1\n-u root\n", port))
	unit := replaceAll(t, orig, "/etc/memcached.conf", conf)
	// What the root user manager here cannot give the shipped unit (as
	// for Debian's redis-server.service in TestE2EConvertedDebianRedis):
	// ProtectKernelTunables= and ProtectControlGroups= fail with
	// 226/NAMESPACE here.
	conv := convertUnit(t, bin, "memcached.service", dropLines(unit, "ProtectKernelTunables=", "ProtectControlGroups="))
	for _, want := range []string{"--preset=memcached -- " + wrapper, "has no graceful stop"} {
		if !strings.Contains(conv, want) {
			t.Fatalf("converted unit lacks %q:\n%s", want, conv)
		}
	}
	name := unitName("deb-memcached")
	u.InstallUnit(t, name, conv)
	u.Start(t, name)
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatalf("memcached does not answer: %v\n%s\n%s", err, u.Status(t, name), u.UnitLog(t, name))
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("version\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "VERSION ") {
		t.Fatalf("version: %q %v", line, err)
	}
	u.Stop(t, name)
	if r := u.Show(t, name, "Result"); r != "success" {
		t.Errorf("Result=%s after stop, want success\n%s", r, u.UnitLog(t, name))
	}
	log := u.UnitLog(t, name)
	t.Logf("graceshim's log:\n%s", log)
	if !strings.Contains(log, "has no graceful stop") || strings.Contains(log, "stopping memcached gracefully") {
		t.Errorf("graceshim's log does not say memcached has no graceful stop:\n%s", log)
	}
	// The connection was closed by the stop, not held: memcached is gone
	// once systemctl stop returned, so the read ends at once in EOF (or a
	// reset). A read that runs into its deadline found it still open.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the client connection is still open after the stop: read %v", err)
	}
}
