package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"syscall"
)

// Opening a bbolt file trusts it: with NoFreelistSync, bolt.Open walks
// every page to rebuild the free list in a goroutine of its own, where a
// damaged page panics or faults beyond the reach of recover, and bbolt
// makes a new database out of an empty file, which would hand out issued
// ids again. So the file is checked first, page by page, with every bound
// that walk relies on: the meta pages (magic, version, checksum, the
// high-water mark against the file's size), then the B+tree from the root
// bucket down (page ids, types, element bounds, key order, each page
// reached once). The layout is bbolt's (go.etcd.io/bbolt/internal/common:
// page.go, meta.go), in the byte order of the machines bbolt writes on.

// bbolt's file layout.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	elementSize     = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	metaOffset      = pageHeaderSize
	metaChecksumOff = metaOffset + 56 // the checksum covers the meta before it
	metaSize        = 64
	inBucketSize    = 16 // root pgid u64, sequence u64

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10
	bucketLeaf   = 0x01

	noFreelist = ^uint64(0)
)

var le = binary.LittleEndian

// damagedError is a data file that is not whole. Its message is the one
// line start-up stops with.
type damagedError struct {
	path, why string
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("store: %s is damaged (%s): it cannot be opened; restore it from a backup (tempalias backup)", e.path, e.why)
}

// checkFile refuses a file at path that exists but is not a whole bbolt
// file. A path that does not exist is fine: Open creates it. A file
// another process holds (bbolt keeps an exclusive lock on it while open)
// is not checked: its pages change under the check, and bolt.Open
// reports the lock.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	// A shared lock keeps writers out while the file is read; it goes
	// with f, before bolt.Open takes its own exclusive one.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return &damagedError{path, "it is empty"}
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("store: read %s: %w", path, err)
	}
	defer syscall.Munmap(data)
	c := &checker{data: data}
	if why := c.check(); why != "" {
		return &damagedError{path, why}
	}
	return nil
}

// checker reads the file from data, every access within its bounds.
type checker struct {
	data     []byte
	pageSize int64
	hwm      uint64 // pages in use: ids below it
	seen     map[uint64]bool
}

// meta is what checkFile needs of a meta page.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// check returns why the file is damaged, or "".
func (c *checker) check() string {
	size := int64(len(c.data))
	const head = pageHeaderSize + metaSize
	if size < head {
		return "too short for its first page"
	}
	m0, why := parseMeta(c.data[:head], 0)
	if why != "" {
		return why
	}
	c.pageSize = int64(m0.pageSize)
	if size < c.pageSize+head {
		return "too short for its second page"
	}
	m1, why := parseMeta(c.data[c.pageSize:c.pageSize+head], 1)
	if why != "" {
		return why
	}
	if m1.pageSize != m0.pageSize {
		return "its meta pages disagree on the page size"
	}
	m := m0
	if m1.txid > m0.txid {
		m = m1 // bbolt opens the later transaction
	}
	c.hwm = m.pgid
	if c.hwm < 3 || c.hwm > uint64(size/c.pageSize) {
		return fmt.Sprintf("truncated: %d bytes hold %d pages of %d, its meta page says %d", size, size/c.pageSize, c.pageSize, c.hwm)
	}
	if m.root < 2 || m.root >= c.hwm {
		return fmt.Sprintf("root page %d out of bounds", m.root)
	}
	c.seen = make(map[uint64]bool)
	if m.freelist != noFreelist {
		if m.freelist < 2 || m.freelist >= c.hwm {
			return fmt.Sprintf("free list page %d out of bounds", m.freelist)
		}
		if why := c.checkFreelist(m.freelist); why != "" {
			return why
		}
	}
	_, why = c.walk(m.root, nil, nil, 0)
	return why
}

func parseMeta(b []byte, id uint64) (meta, string) {
	where := fmt.Sprintf("meta page %d", id)
	if le.Uint64(b[0:8]) != id || le.Uint16(b[8:10]) != metaPage {
		return meta{}, where + " is not a meta page"
	}
	mb := b[metaOffset:]
	if le.Uint32(mb[0:4]) != boltMagic {
		return meta{}, where + " has no bbolt magic: not a tempalias data file"
	}
	if le.Uint32(mb[4:8]) != boltVersion {
		return meta{}, where + " has an unknown bbolt version"
	}
	h := fnv.New64a()
	h.Write(b[metaOffset:metaChecksumOff])
	if h.Sum64() != le.Uint64(b[metaChecksumOff:metaChecksumOff+8]) {
		return meta{}, where + " fails its checksum"
	}
	m := meta{
		pageSize: le.Uint32(mb[8:12]),
		root:     le.Uint64(mb[16:24]),
		freelist: le.Uint64(mb[32:40]),
		pgid:     le.Uint64(mb[40:48]),
		txid:     le.Uint64(mb[48:56]),
	}
	if m.pageSize < 512 || m.pageSize > 1<<16 || m.pageSize&(m.pageSize-1) != 0 {
		return meta{}, fmt.Sprintf("%s has a page size of %d", where, m.pageSize)
	}
	return m, ""
}

// page reads page id with its overflow pages, checking its header.
func (c *checker) page(id uint64, want uint16) ([]byte, string) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Sprintf("page %d out of bounds (%d pages)", id, c.hwm)
	}
	at := int64(id) * c.pageSize // within the file: id < hwm, checked against its size
	h := c.data[at : at+pageHeaderSize]
	if le.Uint64(h[0:8]) != id {
		return nil, fmt.Sprintf("page %d says it is page %d", id, le.Uint64(h[0:8]))
	}
	if flags := le.Uint16(h[8:10]); flags&want == 0 || flags&(flags-1) != 0 {
		return nil, fmt.Sprintf("page %d has type %#x", id, flags)
	}
	overflow := uint64(le.Uint32(h[12:16]))
	if id+overflow >= c.hwm {
		return nil, fmt.Sprintf("page %d runs past the last page", id)
	}
	for i := uint64(0); i <= overflow; i++ {
		if c.seen[id+i] {
			return nil, fmt.Sprintf("page %d reached twice", id+i)
		}
		c.seen[id+i] = true
	}
	return c.data[at : at+int64(overflow+1)*c.pageSize], ""
}

func (c *checker) checkFreelist(id uint64) string {
	p, why := c.page(id, freelistPage)
	if why != "" {
		return why
	}
	n, start := uint64(le.Uint16(p[10:12])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the count is the first element
		if len(p) < pageHeaderSize+8 {
			return fmt.Sprintf("free list page %d is cut short", id)
		}
		n, start = le.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(p))-start)/8 {
		return fmt.Sprintf("free list page %d holds more than it can", id)
	}
	return ""
}

// maxDepth bounds the B+tree's depth (bbolt's are a handful of levels):
// a cycle that escaped the seen set, or a hostile file, stops here.
const maxDepth = 64

// walk checks the tree at page id, whose keys must lie in [min, max)
// (nil: unbounded), and returns its last key.
func (c *checker) walk(id uint64, min, max []byte, depth int) ([]byte, string) {
	if depth > maxDepth {
		return nil, "tree too deep"
	}
	p, why := c.page(id, branchPage|leafPage)
	if why != "" {
		return nil, why
	}
	return c.walkPage(p, fmt.Sprintf("page %d", id), min, max, depth)
}

// walkPage checks the elements of p (a page, or an inline bucket's page)
// and what they lead to.
func (c *checker) walkPage(p []byte, where string, min, max []byte, depth int) ([]byte, string) {
	if len(p) < pageHeaderSize {
		return nil, where + " is cut short"
	}
	flags, count := le.Uint16(p[8:10]), int(le.Uint16(p[10:12]))
	if flags != branchPage && flags != leafPage {
		return nil, fmt.Sprintf("%s has type %#x", where, flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return nil, fmt.Sprintf("%s holds %d elements, more than fit", where, count)
	}
	if flags == branchPage && count == 0 {
		return nil, where + " is an empty branch"
	}
	type elem struct {
		key, val []byte
		flags    uint32
		child    uint64
	}
	elems := make([]elem, count)
	for i := range elems {
		at := pageHeaderSize + i*elementSize
		e := p[at : at+elementSize]
		var pos, ksize, vsize uint64
		if flags == branchPage {
			pos, ksize = uint64(le.Uint32(e[0:4])), uint64(le.Uint32(e[4:8]))
			elems[i].child = le.Uint64(e[8:16])
		} else {
			elems[i].flags = le.Uint32(e[0:4])
			pos, ksize, vsize = uint64(le.Uint32(e[4:8])), uint64(le.Uint32(e[8:12])), uint64(le.Uint32(e[12:16]))
		}
		start := uint64(at) + pos
		if start+ksize+vsize > uint64(len(p)) {
			return nil, fmt.Sprintf("%s: element %d out of bounds", where, i)
		}
		elems[i].key = p[start : start+ksize]
		elems[i].val = p[start+ksize : start+ksize+vsize]
	}
	// Key order: ascending, within the range the parent gives.
	prev := min
	for i, e := range elems {
		if prev != nil && (bytes.Compare(prev, e.key) > 0 || (i > 0 && bytes.Equal(prev, e.key))) {
			return nil, fmt.Sprintf("%s: keys out of order", where)
		}
		if max != nil && bytes.Compare(e.key, max) >= 0 {
			return nil, fmt.Sprintf("%s: key beyond its parent's range", where)
		}
		prev = e.key
	}
	var last []byte
	if count > 0 {
		last = elems[count-1].key
	}
	if flags == branchPage {
		runningMin := min
		for i, e := range elems {
			hi := max
			if i < count-1 {
				hi = elems[i+1].key
			}
			sub, why := c.walk(e.child, e.key, hi, depth+1)
			if why != "" {
				return nil, why
			}
			if bytes.Compare(runningMin, e.key) > 0 {
				return nil, fmt.Sprintf("%s: keys out of order", where)
			}
			runningMin, last = sub, sub
		}
		return last, ""
	}
	for i, e := range elems {
		if e.flags&bucketLeaf == 0 {
			continue
		}
		if len(e.val) < inBucketSize {
			return nil, fmt.Sprintf("%s: bucket %d cut short", where, i)
		}
		root := le.Uint64(e.val[0:8])
		if root == 0 { // an inline bucket: its page is in the value
			if _, why := c.walkPage(e.val[inBucketSize:], fmt.Sprintf("%s: inline bucket %d", where, i), nil, nil, depth+1); why != "" {
				return nil, why
			}
			continue
		}
		if _, why := c.walk(root, nil, nil, depth+1); why != "" {
			return nil, why
		}
	}
	return last, ""
}
