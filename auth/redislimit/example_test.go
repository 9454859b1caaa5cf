package redislimit_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/redislimit"
)

func Example() {
	// An in-process Redis stands in for a real one here.
	srv, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	client := redis.NewClient(&redis.Options{
		Addr:                  srv.Addr(),
		ContextTimeoutEnabled: true, // required: let deadlines reach the network
	})
	defer client.Close()
	limiter, err := redislimit.New(client,
		redislimit.WithPrefix("myapi:rl:"),
		redislimit.WithTimeout(time.Second), // each call's bound; the default is 100ms
	)
	if err != nil {
		log.Fatal(err)
	}

	// Two requests a minute for each key; every instance of the service
	// that uses this Redis and prefix shares the budget.
	lim := auth.PerMinute("api", 2)
	for i := 1; i <= 3; i++ {
		d, err := limiter.Allow(context.Background(), "key_1", lim)
		if err != nil {
			// Redis failed: the caller's policy decides (here: fail closed).
			log.Print(err)
			continue
		}
		if !d.Allowed {
			fmt.Printf("request %d: refused, retry after %v\n", i, d.RetryAfter.Round(time.Second))
			continue
		}
		fmt.Printf("request %d: allowed, %d left\n", i, d.Remaining)
	}
	fmt.Println("budget key:", limiter.Key("key_1", lim))
	// Output:
	// request 1: allowed, 1 left
	// request 2: allowed, 0 left
	// request 3: refused, retry after 30s
	// budget key: myapi:rl:api:key_1
}
