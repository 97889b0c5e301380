package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The node's state directory:
//
//	volumes/<key>.json   one publishState per published target
//	secrets/<key>        its credentials file (0600), when the volume has a secret
//	logs/<key>.log       its daemon's log (process mounter; units log to the journal)
//	bin/bucketfs         the binary systemd units run (systemd mounter)
//
// <key> is a digest of the target path (targetKey): the kubelet gives every
// publication of a volume its own target, so a key names one mount. The
// state is what lets a restarted driver find its mounts (recover.go), and
// lets NodeUnpublishVolume remove what an earlier driver process made.
type stateDir struct {
	root string
}

// publishState is one published target. It holds no secret: the
// credentials stay in their own 0600 file.
type publishState struct {
	VolumeID string `json:"volumeID"`
	Target   string `json:"target"`
	// Source, Options and Credentials are the mount: what a remount after
	// the daemon died needs.
	Source      string   `json:"source"`
	Options     []string `json:"options"`
	Credentials string   `json:"credentials,omitempty"` // the credentials file, if any
	LogFile     string   `json:"logFile,omitempty"`
	// Digest identifies the publication's request (volume id, source,
	// options, credentials): a NodePublishVolume of the same target with
	// another digest is a different publication.
	Digest string `json:"digest"`
	// Mounter, Unit and PID say who serves the mount now.
	Mounter   string    `json:"mounter"`
	Unit      string    `json:"unit,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Published time.Time `json:"published"`
}

// openStateDir creates the state directory's subdirectories, private to
// root.
func openStateDir(root string) (*stateDir, error) {
	if root == "" {
		return nil, errors.New("no state directory (--state-dir)")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"volumes", "secrets", "logs"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o700); err != nil {
			return nil, fmt.Errorf("state directory: %v", err)
		}
	}
	return &stateDir{root: abs}, nil
}

// targetKey names a target path's files.
func targetKey(target string) string {
	h := sha256.Sum256([]byte(filepath.Clean(target)))
	return hex.EncodeToString(h[:16])
}

func (s *stateDir) statePath(key string) string {
	return filepath.Join(s.root, "volumes", key+".json")
}

func (s *stateDir) credentialsPath(key string) string {
	return filepath.Join(s.root, "secrets", key)
}

func (s *stateDir) logPath(key string) string {
	return filepath.Join(s.root, "logs", key+".log")
}

// load returns the state of key, or nil when there is none.
func (s *stateDir) load(key string) (*publishState, error) {
	b, err := os.ReadFile(s.statePath(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st publishState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %v", s.statePath(key), err)
	}
	return &st, nil
}

// save writes st atomically.
func (s *stateDir) save(st *publishState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.statePath(targetKey(st.Target)), append(b, '\n'), 0o600)
}

// remove deletes the state, credentials and log of key.
func (s *stateDir) remove(key string) error {
	var errs []error
	for _, p := range []string{s.credentialsPath(key), s.statePath(key), s.logPath(key)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// all returns every state in the directory; a file that does not parse is
// skipped and reported in the error.
func (s *stateDir) all() ([]*publishState, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "volumes"))
	if err != nil {
		return nil, err
	}
	var out []*publishState
	var errs []error
	for _, e := range entries {
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		st, err := s.load(key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st != nil {
			out = append(out, st)
		}
	}
	return out, errors.Join(errs...)
}

// writeCredentials writes c as an AWS shared credentials file for key,
// readable by root only, and returns its path. The values were checked to
// hold no line break (secretCredentials), so they cannot add lines.
func (s *stateDir) writeCredentials(key string, c credentials) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.AccessKeyID, c.SecretAccessKey)
	if c.SessionToken != "" {
		fmt.Fprintf(&b, "aws_session_token = %s\n", c.SessionToken)
	}
	p := s.credentialsPath(key)
	return p, writeFileAtomic(p, []byte(b.String()), 0o600)
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, created with perm (never wider, whatever the umask).
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
