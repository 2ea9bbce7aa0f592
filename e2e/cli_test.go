package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run runs the built graceshim with args and extra environment, bounded in
// time, and returns its exit code and standard error.
func runShim(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	bin := needGraceshim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("graceshim %s hung", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatalf("graceshim %s: %v", strings.Join(args, " "), err)
	}
	return 0, stderr.String()
}

// TestExitCodes: the child's status passes through; graceshim's own
// failures have their documented codes and a one-line message.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	notExec := filepath.Join(dir, "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		name    string
		env     []string
		args    []string
		want    int
		message string // in the last line of stderr
	}{
		{"child status", nil, []string{"--ready=exec", "--", "sh", "-c", "exit 7"}, 7, ""},
		{"child killed", nil, []string{"--ready=exec", "--", "sh", "-c", "kill -KILL $$"}, 137, ""},
		{"missing command", nil, []string{"--preset", "nginx"}, 2, "missing command"},
		{"unknown preset", nil, []string{"--preset", "nginxx", "--", "true"}, 2, `unknown preset "nginxx"`},
		{"unknown signal", nil, []string{"--map", "TERM:QUITT", "--", "true"}, 2, `unknown signal "QUITT"`},
		{"unknown signal from env", []string{"GRACESHIM_MAP=TERM:BOGUS"}, []string{"--", "true"}, 2, `unknown signal "BOGUS"`},
		{"bad duration", nil, []string{"--drain-timeout", "soon", "--", "true"}, 2, "soon"},
		{"negative duration", nil, []string{"--kill-timeout=-1s", "--", "true"}, 2, "must not be negative"},
		{"unknown count mode", nil, []string{"--count", "some", "--", "true"}, 2, "some"},
		{"not found", nil, []string{"--", "graceshim-no-such-command"}, 127, "command not found: graceshim-no-such-command"},
		{"not executable", nil, []string{"--", notExec}, 126, "command not executable"},
		{"pid file never appears", nil, []string{"--pidfile", filepath.Join(dir, "never.pid"), "--ready-timeout", "300ms", "--", "true"}, 125, "did not name a live process"},
		{"health address invalid", nil, []string{"--health-listen", "256.0.0.1:1", "--", "true"}, 2, "cannot serve health checks"},
		{"health address in use", nil, []string{"--health-listen", taken.Addr().String(), "--", "true"}, 2, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runShim(t, tt.env, tt.args...)
			if code != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.want, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if last := lines[len(lines)-1]; !strings.Contains(last, tt.message) {
				t.Errorf("last line %q, want it to say %q", last, tt.message)
			}
		})
	}
}

func TestVersionAndPresets(t *testing.T) {
	bin := needGraceshim(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "graceshim version ") {
		t.Errorf("--version: %q, %v", out, err)
	}
	out, err = exec.Command(bin, "--generate-man").Output()
	if err != nil || !strings.Contains(string(out), ".TH graceshim 1") || !strings.Contains(string(out), ".SH EXIT STATUS") {
		t.Errorf("--generate-man: %v, want a man page:\n%.300s", err, out)
	}
	out, err = exec.Command(bin, "presets").CombinedOutput()
	if err != nil {
		t.Fatalf("presets: %v\n%s", err, out)
	}
	for _, want := range []string{"nginx ", "QUIT", "haproxy", "USR1", "sidekiq", "TSTP+TERM"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("presets output lacks %q:\n%s", want, out)
		}
	}
}
