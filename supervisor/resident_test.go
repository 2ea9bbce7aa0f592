package supervisor

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		want mapping
	}{
		{"00400000-00919000 r-xp 00000000 fd:01 1234567                            /usr/bin/graceshim", true,
			mapping{start: 0x400000, end: 0x919000, dev: unix.Mkdev(0xfd, 1), inode: 1234567, private: true}},
		{"00e7a000-00ede000 rw-p 00a79000 08:11 42 /usr/bin/graceshim (deleted)", true,
			mapping{start: 0xe7a000, end: 0xede000, dev: unix.Mkdev(8, 0x11), inode: 42, writable: true, private: true}},
		{"7f0000000000-7f0000001000 r--s 00000000 00:05 9 /dev/zero", true,
			mapping{start: 0x7f0000000000, end: 0x7f0000001000, dev: unix.Mkdev(0, 5), inode: 9}},
		{"7fff7c215000-7fff7c236000 rw-p 00000000 00:00 0                          [stack]", true,
			mapping{start: 0x7fff7c215000, end: 0x7fff7c236000, writable: true, private: true}},
		{"Rss:                4260 kB", false, mapping{}},
		{"Anonymous:             0 kB", false, mapping{}},
		{"VmFlags: rd ex mr mw me dw sd", false, mapping{}},
		{"zz-00919000 r-xp 00000000 fd:01 1 /x", false, mapping{}},
	} {
		got, ok := parseMapsLine([]byte(tc.line))
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseMapsLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// rssFile is this process's resident file pages, in kB.
func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestDropStartupPages runs on the test binary itself: its code and
// read-only data leave the resident set, it goes on running (the pages
// fault back in from the page cache), and a second drop finds the same
// mappings again.
func TestDropStartupPages(t *testing.T) {
	before := rssFile(t)
	n, err := dropStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("unmapped %d kB of mappings; RssFile %d kB, then %d kB", n>>10, before, after)
	if n == 0 {
		t.Fatal("nothing of the executable was unmapped")
	}
	if after >= before {
		t.Errorf("RssFile %d kB after the drop, %d kB before: the pages stayed mapped", after, before)
	}
	// Code all over the binary runs again: fmt, strconv, the runtime.
	if s := strconv.Quote(strings.Repeat("x", 3)); s != `"xxx"` {
		t.Fatalf("Quote = %s", s)
	}
	if n2, err := dropStartupPages(); err != nil || n2 != n {
		t.Errorf("second drop: %d bytes, %v; want %d bytes again", n2, err, n)
	}
}

// TestDropStartupPagesKeepsWrittenMappings: a read-only private mapping
// with copy-on-write pages (as a dynamically linked build's RELRO
// segment, written by the loader and then made read-only) is left alone:
// MADV_DONTNEED would throw its writes away.
func TestDropStartupPagesKeepsWrittenMappings(t *testing.T) {
	mem := writtenExeCopy(t)
	if _, err := dropStartupPages(); err != nil {
		t.Fatal(err)
	}
	if got := string(mem[:21]); got != "written by the loader" {
		t.Fatalf("the written page reads %q after the drop: its copy was discarded", got)
	}
}

// TestDropStartupPagesKeepsSwappedCopies: a copy-on-write page that was
// swapped out is no longer counted in smaps' Anonymous: but in its Swap:;
// MADV_DONTNEED would throw the swapped copy away just the same, and a
// dynamically linked build's RELRO (its relocated GOT) would read as the
// file's unrelocated bytes. Needs swap (MADV_PAGEOUT, Linux 5.4, moves
// the page there); skipped where there is none.
func TestDropStartupPagesKeepsSwappedCopies(t *testing.T) {
	swaps, err := os.ReadFile("/proc/swaps")
	if err != nil || len(bytes.Split(bytes.TrimSpace(swaps), []byte("\n"))) < 2 {
		t.Skip("no swap enabled (/proc/swaps): a page cannot be swapped out")
	}
	mem := writtenExeCopy(t)
	if err := unix.Madvise(mem, unix.MADV_PAGEOUT); err != nil {
		t.Skipf("madvise MADV_PAGEOUT: %v", err)
	}
	if swapped := smapsField(t, uintptr(unsafe.Pointer(&mem[0])), "Swap:"); swapped == 0 {
		t.Skip("the page was not swapped out")
	}
	if _, err := dropStartupPages(); err != nil {
		t.Fatal(err)
	}
	if got := string(mem[:21]); got != "written by the loader" {
		t.Fatalf("the swapped-out page reads %q after the drop: its copy was discarded", got)
	}
}

// writtenExeCopy maps the executable's first page privately, writes
// "written by the loader" to it, then makes it read-only: a mapping with
// the executable's device and inode, no w, and a copy-on-write page, as
// a dynamically linked build's RELRO.
func writtenExeCopy(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the mapping outlives the descriptor
	mem, err := unix.Mmap(int(f.Fd()), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	copy(mem, "written by the loader")
	if err := unix.Mprotect(mem, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	return mem
}

// smapsField returns the kB of field ("Swap:") of the mapping at addr.
func smapsField(t *testing.T, addr uintptr, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, line := range bytes.Split(b, []byte("\n")) {
		if m, ok := parseMapsLine(line); ok {
			in = m.start <= addr && addr < m.end
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte(field)); ok && in {
			n, _ := strconv.Atoi(string(bytes.Fields(v)[0]))
			return n
		}
	}
	return 0
}
