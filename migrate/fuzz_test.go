package migrate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Any input: Read and Convert return errors, never panic, and whatever Convert
// returns can be written.
func FuzzReadConvert(f *testing.F) {
	files, _ := filepath.Glob("testdata/metallb/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m MetalLB
		if _, err := m.Read(bytes.NewReader(in), "fuzz"); err != nil {
			return
		}
		res, err := Convert(&m, Options{})
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := res.WriteYAML(&out); err != nil {
			t.Fatal(err)
		}
		if err := res.WriteReport(&out); err != nil {
			t.Fatal(err)
		}
	})
}
