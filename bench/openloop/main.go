// Open-loop load: POST checkout requests at a fixed rate, whatever the answers take, and report
// each request's latency from the moment it was due, not the moment it was sent, so a slow
// server cannot hold back the load that measures it (no coordinated omission).
//
// Every request has its own contact, order and Idempotency-Key, its code taken in turn from
// BENCH_CODES (comma-separated); BENCH_KEY is the API key. Prints one JSON line.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type outcome struct {
	latency time.Duration
	ok      bool
}

func main() {
	url := flag.String("url", "", "endpoint to POST to")
	rate := flag.Float64("rate", 1000, "requests a second")
	seconds := flag.Float64("seconds", 10, "how long to send")
	tag := flag.String("tag", "openloop", "prefix of this call's keys, contacts and orders")
	flag.Parse()
	codes := strings.Split(os.Getenv("BENCH_CODES"), ",")
	auth := "Bearer " + os.Getenv("BENCH_KEY")
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4096, DisableCompression: true},
	}

	total := int(*rate * *seconds)
	interval := time.Duration(float64(time.Second) / *rate)
	outcomes := make([]outcome, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			id := fmt.Sprintf("%s-%d", *tag, i)
			body := fmt.Sprintf(
				`{"code":"%s","customer":{"contact_id":"c-%s","email":"c@example.com"},`+
					`"cart":{"currency":"EUR","amount":4900},"order_ref":"o-%s"}`,
				codes[i%len(codes)], id, id)
			request, _ := http.NewRequest("POST", *url, strings.NewReader(body))
			request.Header.Set("Content-Type", "application/json")
			request.Header.Set("Authorization", auth)
			request.Header.Set("Idempotency-Key", id)
			response, err := client.Do(request)
			ok := err == nil && response.StatusCode/100 == 2
			if err == nil {
				io.Copy(io.Discard, response.Body)
				response.Body.Close()
			}
			outcomes[i] = outcome{time.Since(due), ok}
		}(i, due)
	}
	wg.Wait()
	answered := time.Since(start) // the throughput is the requests over this, not over the rate

	latencies := make([]float64, 0, total)
	bad := 0
	for _, o := range outcomes {
		latencies = append(latencies, float64(o.latency)/float64(time.Millisecond))
		if !o.ok {
			bad++
		}
	}
	sort.Float64s(latencies)
	percentile := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		at := int(p / 100 * float64(len(latencies)))
		if at >= len(latencies) {
			at = len(latencies) - 1
		}
		return latencies[at]
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"requests": total, "seconds": answered.Seconds(), "bad": bad,
		"p50": percentile(50), "p90": percentile(90), "p99": percentile(99),
		"p99.9": percentile(99.9), "max": latencies[len(latencies)-1],
	})
}
