// Command extenderload drives a scheduler extender the way kube-scheduler does: Go's net/http
// with keep-alive, encoding/json bodies of the k8s.io/kube-scheduler/extender/v1 shapes
// (nodeCacheCapable: node names only), filter then prioritize with the filter's survivors
// (none when fewer than two survive, as kube-scheduler sends none then).
//
// Usage: extenderload -url http://127.0.0.1:PORT -pod pod.json -nodes names.json
//
//	[-requests 600] [-warmup 50] [-concurrency 8] [-seconds 5]
//
// Latency is the HTTP exchange: from sending the request to the last byte of the answer
// (decoding the answer is the client's work). It prints one JSON object: per-verb latencies in
// milliseconds (one pod at a time, as one scheduling cycle sends them; null for prioritize when
// no cycle sent one), then requests per second of each verb alone with -concurrency requests in
// flight for -seconds (null for prioritize when the last filter kept fewer than two nodes).
// Prioritize holds devices in snapshot mode; in the latency phase each pod's are released
// (POST /release, untimed) so that the run does not fill it.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ExtenderArgs is the filter and prioritize request (nodeCacheCapable).
type ExtenderArgs struct {
	Pod       json.RawMessage `json:"Pod"`
	Nodes     *struct{}       `json:"Nodes"`
	NodeNames *[]string       `json:"NodeNames"`
}

// FilterResult is the filter answer.
type FilterResult struct {
	NodeNames                  *[]string         `json:"NodeNames"`
	FailedNodes                map[string]string `json:"FailedNodes"`
	FailedAndUnresolvableNodes map[string]string `json:"FailedAndUnresolvableNodes"`
	Error                      string            `json:"Error"`
}

// HostPriority is one entry of the prioritize answer.
type HostPriority struct {
	Host  string `json:"Host"`
	Score int64  `json:"Score"`
}

type driver struct {
	client *http.Client
	url    string
	pod    []byte
	nodes  []string
}

func (d *driver) post(verb string, names []string, uid int, out any) (time.Duration, error) {
	pod := bytes.Replace(d.pod, []byte("UID"), []byte(fmt.Sprintf("u%d", uid)), -1)
	body, err := json.Marshal(ExtenderArgs{Pod: pod, NodeNames: &names})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := d.client.Post(d.url+"/"+verb, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d: %s", verb, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return 0, fmt.Errorf("%s: %v", verb, err)
	}
	return took, nil
}

// cycle sends filter then prioritize for pod number uid, as one scheduling cycle does, then
// releases what prioritize held (snapshot mode's /release; untimed). Like kube-scheduler, it
// sends no prioritize when filter keeps fewer than two nodes (pkg/scheduler/schedule_one.go:
// a FitError with none, the one node itself with one); sent is false then.
func (d *driver) cycle(uid int) (f, p time.Duration, sent bool, err error) {
	var filtered FilterResult
	if f, err = d.post("filter", d.nodes, uid, &filtered); err != nil {
		return 0, 0, false, err
	}
	if filtered.Error != "" || filtered.NodeNames == nil {
		return 0, 0, false, fmt.Errorf("filter: %q", filtered.Error)
	}
	if len(*filtered.NodeNames) < 2 {
		return f, 0, false, d.release(uid)
	}
	var scores []HostPriority
	if p, err = d.post("prioritize", *filtered.NodeNames, uid, &scores); err != nil {
		return 0, 0, false, err
	}
	return f, p, true, d.release(uid)
}

func (d *driver) release(uid int) error {
	resp, err := d.client.Post(
		d.url+"/release", "application/json", strings.NewReader(fmt.Sprintf(`{"PodUID":"u%d"}`, uid)),
	)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// rate posts verb with names for -seconds from -concurrency goroutines: requests per second.
// Each goroutine repeats one pod (as kube-scheduler retries one), so prioritize's tentative
// hold replaces the last one instead of filling the snapshot.
func (d *driver) rate(verb string, names []string, concurrency int, seconds float64) float64 {
	var done atomic.Int64
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				var out any
				if _, err := d.post(verb, names, 10_000_000+w, &out); err != nil {
					fail(err)
				}
				done.Add(1)
			}
		}(w)
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}

// summary gives p50, p99 and max in ms; nil for no samples.
func summary(samples []time.Duration) map[string]float64 {
	if len(samples) == 0 {
		return nil
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return map[string]float64{
		"p50_ms": ms(samples[len(samples)/2]),
		"p99_ms": ms(samples[(len(samples)-1)*99/100]),
		"max_ms": ms(samples[len(samples)-1]),
	}
}

func main() {
	url := flag.String("url", "", "extender base URL")
	podFile := flag.String("pod", "", "pod JSON; the text UID is replaced by a unique uid")
	nodesFile := flag.String("nodes", "", "JSON list of node names")
	requests := flag.Int("requests", 600, "timed scheduling cycles")
	warmup := flag.Int("warmup", 50, "untimed cycles first")
	concurrency := flag.Int("concurrency", 8, "pods in flight for the throughput phase")
	seconds := flag.Float64("seconds", 5, "length of the throughput phase")
	flag.Parse()
	d := &driver{url: *url, client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
	var err error
	if d.pod, err = os.ReadFile(*podFile); err != nil {
		fail(err)
	}
	raw, err := os.ReadFile(*nodesFile)
	if err == nil {
		err = json.Unmarshal(raw, &d.nodes)
	}
	if err != nil {
		fail(err)
	}
	for i := 0; i < *warmup; i++ {
		if _, _, _, err := d.cycle(-1 - i); err != nil {
			fail(err)
		}
	}
	var filters, prioritizes, pairs []time.Duration
	for i := 0; i < *requests; i++ {
		f, p, sent, err := d.cycle(i)
		if err != nil {
			fail(err)
		}
		filters, pairs = append(filters, f), append(pairs, f+p)
		if sent {
			prioritizes = append(prioritizes, p)
		}
	}
	var filtered FilterResult
	if _, err := d.post("filter", d.nodes, -1, &filtered); err != nil {
		fail(err)
	}
	if filtered.Error != "" || filtered.NodeNames == nil {
		fail(fmt.Errorf("filter: %q", filtered.Error))
	}
	rates := map[string]any{
		"concurrency": *concurrency,
		"filter":      d.rate("filter", d.nodes, *concurrency, *seconds),
		"prioritize":  nil, // kube-scheduler sends none for fewer than two nodes
	}
	if len(*filtered.NodeNames) >= 2 {
		rates["prioritize"] = d.rate("prioritize", *filtered.NodeNames, *concurrency, *seconds)
	}
	out := map[string]any{
		"filter":         summary(filters),
		"prioritize":     summary(prioritizes),
		"pair":           summary(pairs),
		"requests_per_s": rates,
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "extenderload:", err)
	os.Exit(1)
}
