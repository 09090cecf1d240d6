// Open-loop load: POST checkout requests at a fixed rate, whatever the answers take, and report
// each request's latency from the moment it was due, not the moment it was sent, so a slow
// server cannot hold back the load that measures it (no coordinated omission).
//
// Every request has its own contact, order and Idempotency-Key, its code taken in turn from
// BENCH_CODES (comma-separated); BENCH_KEY is the API key. Prints one JSON line.
//
// It speaks HTTP/1.1 over plain keep-alive connections itself, a request on an idle connection
// (the one used last) or on a new one when none is idle, instead of through net/http's client:
// that client took 11-14% of the two cores at 1,000 requests a second, CPU the service under
// test then lacked (wrk, in C, takes 2-4% at twice the rate).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type outcome struct {
	latency time.Duration
	ok      bool
}

// conn is one keep-alive connection to the server.
type conn struct {
	net.Conn
	reader *bufio.Reader
}

// pool hands out the connection idle the shortest time, or dials a new one.
type pool struct {
	address string
	mu      sync.Mutex
	idle    []*conn
}

// get returns a connection, and whether it was used before (the server may have closed it).
func (p *pool) get() (*conn, bool, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	raw, err := net.Dial("tcp", p.address)
	if err != nil {
		return nil, false, err
	}
	return &conn{raw, bufio.NewReaderSize(raw, 16*1024)}, false, nil
}

func (p *pool) put(c *conn) {
	p.mu.Lock()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// roundTrip writes one request and reads its response: the status code, and whether the
// connection may be used again.
func (c *conn) roundTrip(request []byte) (int, bool, error) {
	if _, err := c.Write(request); err != nil {
		return 0, false, err
	}
	line, err := c.reader.ReadString('\n')
	if err != nil {
		return 0, false, err
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0, false, err
	}
	length, chunked, reusable := -1, false, true
	for {
		header, err := c.reader.ReadString('\n')
		if err != nil {
			return 0, false, err
		}
		header = strings.TrimRight(header, "\r\n")
		if header == "" {
			break
		}
		name, value, _ := strings.Cut(header, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			if length, err = strconv.Atoi(value); err != nil {
				return 0, false, err
			}
		case "transfer-encoding":
			chunked = strings.EqualFold(value, "chunked")
		case "connection":
			reusable = !strings.EqualFold(value, "close")
		}
	}
	switch {
	case chunked:
		err = c.discardChunks()
	case length >= 0:
		_, err = c.reader.Discard(length)
	default:
		return status, false, nil // the body runs to the connection's end
	}
	return status, reusable && err == nil, err
}

func (c *conn) discardChunks() error {
	for {
		line, err := c.reader.ReadString('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
		if err != nil {
			return err
		}
		if _, err := c.reader.Discard(int(size) + 2); err != nil { // the chunk and its CRLF
			return err
		}
		if size == 0 {
			return nil
		}
	}
}

// send makes one request. A connection used before may have been closed by the server
// meanwhile (its keep-alive timeout): the request then goes again on another connection, which
// is safe since every request carries its own Idempotency-Key.
func (p *pool) send(request []byte) (int, error) {
	for {
		c, reused, err := p.get()
		if err != nil {
			return 0, err
		}
		status, reusable, err := c.roundTrip(request)
		if reusable {
			p.put(c)
		} else {
			c.Close()
		}
		if err == nil || !reused {
			return status, err
		}
	}
}

func main() {
	target := flag.String("url", "", "endpoint to POST to")
	rate := flag.Float64("rate", 1000, "requests a second")
	seconds := flag.Float64("seconds", 10, "how long to send")
	tag := flag.String("tag", "openloop", "prefix of this call's keys, contacts and orders")
	flag.Parse()
	endpoint, err := url.Parse(*target)
	if err != nil || endpoint.Host == "" {
		fmt.Fprintln(os.Stderr, "openloop: -url must be http://host:port/path")
		os.Exit(2)
	}
	codes := strings.Split(os.Getenv("BENCH_CODES"), ",")
	auth := "Bearer " + os.Getenv("BENCH_KEY")
	connections := &pool{address: endpoint.Host}

	total := int(*rate * *seconds)
	interval := time.Duration(float64(time.Second) / *rate)
	outcomes := make([]outcome, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; {
		late := time.Since(start)
		if due := time.Duration(i) * interval; due > late {
			time.Sleep(due - late)
			continue
		}
		for ; i < total && time.Duration(i)*interval <= late; i++ { // every request now due
			wg.Add(1)
			go func(i int, due time.Time) {
				defer wg.Done()
				id := fmt.Sprintf("%s-%d", *tag, i)
				body := fmt.Sprintf(
					`{"code":"%s","customer":{"contact_id":"c-%s","email":"c@example.com"},`+
						`"cart":{"currency":"EUR","amount":4900},"order_ref":"o-%s"}`,
					codes[i%len(codes)], id, id)
				request := fmt.Sprintf(
					"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
						"Authorization: %s\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
					endpoint.RequestURI(), endpoint.Host, auth, id, len(body), body)
				status, err := connections.send([]byte(request))
				outcomes[i] = outcome{time.Since(due), err == nil && status/100 == 2}
			}(i, start.Add(time.Duration(i)*interval))
		}
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
