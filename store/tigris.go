package store

import (
	"context"
	"net/url"
	"strings"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Tigris reports whether the store is Tigris, which renames objects
// server-side (CopyInput.Rename): when the endpoint is a Tigris host
// (*.storage.dev, *.tigris.dev), or once any response so far named Tigris
// in its Server header (a custom domain or a proxy in front of Tigris). So
// a client that has not yet heard from a custom-domain Tigris says false.
func (s *S3) Tigris() bool {
	return s.tigrisHost || s.tigrisSeen.Load()
}

// tigrisEndpoint reports whether endpoint names a Tigris host:
// t3.storage.dev, fly.storage.tigris.dev and their kin.
func tigrisEndpoint(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	return strings.HasSuffix(host, ".storage.dev") || strings.HasSuffix(host, ".tigris.dev")
}

// watchServer adds to an operation's stack a deserialize step, next to the
// transport so that it sees every attempt's response, errors included,
// that notes a Server header naming Tigris.
func (s *S3) watchServer(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("bucketfsWatchServer",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleDeserialize(ctx, in)
			if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp != nil && !s.tigrisSeen.Load() &&
				strings.Contains(strings.ToLower(resp.Header.Get("Server")), "tigris") {
				s.tigrisSeen.Store(true)
			}
			return out, md, err
		}), middleware.After)
}
