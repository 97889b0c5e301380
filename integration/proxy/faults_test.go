package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// backend serves body for GET /b/k and 200 for anything else.
func backend(t *testing.T, body []byte) *Proxy {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	px, err := Start(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return px
}

func get(t *testing.T, px *Proxy) (int, []byte, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	resp, err := c.Get(px.URL + "/b/k")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestFaultErrors(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1000)
	px := backend(t, body)
	px.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 500, Count: 2})
	for i, want := range []int{500, 500, 200} {
		status, b, err := get(t, px)
		if err != nil || status != want {
			t.Fatalf("request %d: %d %v, want %d", i, status, err, want)
		}
		if want == 500 && !strings.Contains(string(b), "<Code>InternalError</Code>") {
			t.Errorf("error body %q", b)
		}
	}
	if px.Injected() != 2 {
		t.Errorf("injected %d, want 2", px.Injected())
	}
}

func TestFaultReset(t *testing.T) {
	body := bytes.Repeat([]byte("y"), 1<<20)
	px := backend(t, body)
	px.SetFaults(Faults{ResetRate: 1, ResetAfter: 1000, Count: 1})
	_, b, err := get(t, px)
	if err == nil || len(b) != 1000 {
		t.Fatalf("cut body: %d bytes, %v; want 1000 and an error", len(b), err)
	}
	if _, b, err := get(t, px); err != nil || len(b) != len(body) {
		t.Fatalf("after the one fault: %d bytes, %v", len(b), err)
	}
}

func TestFaultStall(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 100000)
	px := backend(t, body)
	px.SetFaults(Faults{StallRate: 1, StallAfter: 500, StallFor: 300 * time.Millisecond, Count: 1})
	start := time.Now()
	if _, b, err := get(t, px); err != nil || len(b) != len(body) {
		t.Fatalf("stalled body: %d bytes, %v", len(b), err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("stall of 300ms took %v", d)
	}
	if px.Injected() != 1 {
		t.Errorf("injected %d", px.Injected())
	}
}

func TestDownAndUp(t *testing.T) {
	px := backend(t, []byte("ok"))
	if err := px.SetDown(true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, px); err == nil {
		t.Fatal("request to a proxy that is down succeeded")
	}
	if err := px.SetDown(false); err != nil {
		t.Fatal(err)
	}
	if status, b, err := get(t, px); err != nil || status != 200 || string(b) != "ok" {
		t.Fatalf("after coming back: %d %q %v", status, b, err)
	}
}
