package haproxyconf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files lists the configuration files an haproxy command line loads, in
// the order haproxy 2.6 loads them (src/haproxy.c, init() and
// cfgfiles_expand_directories()). argv[0] is the program. root is where
// the files are looked up ("" for /): the names returned are haproxy's,
// without root.
//
// The command line as haproxy reads it:
//   - "-f NAME" adds NAME. The name is always the next word: haproxy
//     looks at the flag's first letter only, so "-f/etc/h.cfg" takes the
//     word after it as the file (measured with 2.6.12: "-fzzz a.cfg"
//     loads a.cfg; "-f/etc/h.cfg" alone is a usage error). glued names
//     such a word, so that a caller can say so.
//   - "--" makes every word after it a file, even one that starts with
//     '-'.
//   - "-C DIR", anywhere on the line, changes to DIR before any file is
//     loaded: relative names are under DIR (measured: "-f a.cfg -C DIR"
//     loads DIR/a.cfg).
//   - The other flags that take the next word (-n -m -N -L -p -x -S
//     -cc) take it whatever it is: "-p --" is a pid file named "--".
//     -sf and -st take the words after them up to one starting with '-'.
//
// A directory stands for its regular files whose names end in ".cfg"
// and do not start with '.', in lexical (byte) order; a name in which the
// first ".cfg" is not at the end (a.cfg.cfg) is not loaded, as haproxy
// tests it with strstr (cfgfiles_expand_directories). A name that cannot
// be opened is kept as it is: reading it fails, as haproxy's start does.
func Files(root string, argv []string) (files []string, glued []string) {
	a := parseArgs(argv)
	for _, n := range a.names {
		if a.dir != "" && !filepath.IsAbs(n) {
			n = filepath.Join(a.dir, n)
		}
		st, err := os.Stat(filepath.Join(root, n))
		if err != nil || !st.IsDir() {
			files = append(files, n)
			continue
		}
		entries, err := os.ReadDir(filepath.Join(root, n))
		if err != nil {
			files = append(files, n) // reading it says why
			continue
		}
		var names []string
		for _, e := range entries {
			name := e.Name()
			i := strings.Index(name, ".cfg")
			if name[0] == '.' || i < 0 || i+4 != len(name) {
				continue
			}
			// stat, not lstat: a link to a regular file is loaded.
			if st, err := os.Stat(filepath.Join(root, n, name)); err != nil || !st.Mode().IsRegular() {
				continue
			}
			names = append(names, name)
		}
		slices.Sort(names) // alphasort; haproxy sets no locale, so strcmp's order
		for _, name := range names {
			files = append(files, filepath.Join(n, name))
		}
	}
	return files, a.glued
}

type args struct {
	names []string // -f and after --, as written
	dir   string   // -C
	peer  string   // -L
	set   bool     // -L was given
	glued []string // -fNAME and -CDIR words, which haproxy does not read as NAME or DIR
}

// parseArgs reads argv as haproxy 2.6's init() does.
func parseArgs(argv []string) args {
	var a args
	for i := 1; i < len(argv); i++ {
		w := argv[i]
		if len(w) < 2 || w[0] != '-' {
			continue // haproxy: a usage error
		}
		flag := w[1:]
		switch {
		case flag == "-":
			a.names = append(a.names, argv[i+1:]...)
			return a
		case flag == "cc" || strings.HasPrefix(flag, "cc"):
			i++ // -cc COND
		case strings.ContainsRune("vdVcDWq", rune(flag[0])):
			// no argument
		case flag[0] == 'x' || flag[0] == 'S':
			i++
		case flag[0] == 's' && len(flag) > 1 && (flag[1] == 'f' || flag[1] == 't'):
			for i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
				i++
			}
		default:
			// Two words: the flag and its argument, the next word.
			if i+1 >= len(argv) {
				return a
			}
			i++
			switch flag[0] {
			case 'f':
				a.names = append(a.names, argv[i])
			case 'C':
				a.dir = argv[i]
			case 'L':
				a.peer, a.set = argv[i], true
			}
			if (flag[0] == 'f' || flag[0] == 'C') && len(flag) > 1 {
				a.glued = append(a.glued, w)
			}
		}
	}
	return a
}
