package unitgen

import (
	"slices"
	"strings"
	"testing"
)

// TestInnerWrapperFlags reads the command out of wrapper command lines:
// which flags take a value decides where the command starts.
func TestInnerWrapperFlags(t *testing.T) {
	for _, tc := range []struct {
		argv    string
		cmd     string // "" when there is none
		at      int
		wantErr string
	}{
		{argv: "/usr/bin/tini -s -- /usr/sbin/nginx -g x", cmd: "/usr/sbin/nginx -g x", at: 3},
		// tini's -g takes no value: the command is the next word.
		{argv: "/usr/bin/tini -g /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 2},
		{argv: "/usr/bin/tini -p SIGTERM -e 143 /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 5},
		{argv: "/usr/bin/tini -pSIGTERM -sg /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 3},
		{argv: "/usr/bin/tini -sp SIGTERM /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 3},
		{argv: "/usr/bin/tini -vvv /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 2},
		// dumb-init's --rewrite s:r takes a value.
		{argv: "/usr/bin/dumb-init --rewrite 15:3 /usr/bin/gunicorn app:app", cmd: "/usr/bin/gunicorn app:app", at: 3},
		{argv: "/usr/bin/dumb-init -r 15:3 -c /usr/bin/gunicorn", cmd: "/usr/bin/gunicorn", at: 4},
		{argv: "/usr/bin/dumb-init --rewrite=15:3 --single-child /usr/bin/gunicorn", cmd: "/usr/bin/gunicorn", at: 3},
		{argv: "/usr/bin/catatonit -g -- /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 3},
		// graceshim's run flags take a value, in both forms.
		{argv: "/usr/bin/graceshim --pidfile /run/x.pid -- /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 4},
		// Without --, a word after graceshim's flags is a subcommand
		// (graceshim runs a command only after --).
		{argv: "/usr/bin/graceshim --pidfile /run/x.pid reload 1", at: 5},
		{argv: "/usr/bin/graceshim --drain-timeout=1m --preset nginx -- /usr/sbin/nginx", cmd: "/usr/sbin/nginx", at: 5},
		{argv: "/usr/bin/graceshim reload 1234", at: 3},
		// Unknown flags: the next word may be their value; refuse.
		{argv: "/usr/bin/tini -x /usr/sbin/nginx", wantErr: "tini flag -x is unknown"},
		{argv: "/usr/bin/dumb-init --new-flag 3 /usr/bin/gunicorn", wantErr: "dumb-init flag --new-flag is unknown"},
		{argv: "/usr/bin/graceshim --nope x /usr/sbin/nginx", wantErr: "graceshim flag --nope is unknown"},
		// An unknown flag after -- is the command's own.
		{argv: "/usr/bin/tini -- /usr/sbin/nginx -x", cmd: "/usr/sbin/nginx -x", at: 2},
		{argv: "/usr/sbin/nginx -g x", cmd: "/usr/sbin/nginx -g x", at: 0},
	} {
		argv := strings.Fields(tc.argv)
		cmd, _, at, err := inner(argv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("inner(%s): err %v, want %q", tc.argv, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("inner(%s): %v", tc.argv, err)
			continue
		}
		if !slices.Equal(cmd, strings.Fields(tc.cmd)) || at != tc.at {
			t.Errorf("inner(%s) = %q at %d, want %q at %d", tc.argv, cmd, at, tc.cmd, tc.at)
		}
	}
}
