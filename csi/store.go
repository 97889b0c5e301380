package csi

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// ObjectStore is what the controller needs of the object store: find a
// volume's marker, make it, list and delete a volume's keys, create and
// delete a volume's own bucket. *store.S3 implements it; unit tests use a
// fake.
type ObjectStore interface {
	Head(ctx context.Context, bucket, key string) (*store.Object, error)
	Put(ctx context.Context, in store.PutInput) (*store.Object, error)
	List(ctx context.Context, in store.ListInput) (*store.ListPage, error)
	DeleteKeys(ctx context.Context, bucket string, keys []string) error
	CreateBucket(ctx context.Context, bucket string) error
	DeleteBucket(ctx context.Context, bucket string) error
}

var _ ObjectStore = (*store.S3)(nil)

// StoreConfig is how the controller reaches the store for one request.
type StoreConfig struct {
	Endpoint, Region string
	PathStyle        bool
	// Credentials from the request's secrets; empty AccessKeyID: the
	// driver process's own AWS chain (an instance role, say).
	AccessKeyID, SecretAccessKey, SessionToken string
}

// NewStoreFunc makes the store client of one request.
type NewStoreFunc func(ctx context.Context, c StoreConfig) (ObjectStore, error)

// NewS3Store is the NewStoreFunc of a real driver: an aws-sdk-go-v2 client
// that fails fast (the provisioner retries a failed call with backoff).
func NewS3Store(ctx context.Context, c StoreConfig) (ObjectStore, error) {
	return store.NewS3(ctx, store.S3Config{
		Endpoint:        c.Endpoint,
		Region:          c.Region,
		PathStyle:       c.PathStyle,
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		MaxRetries:      2,
		RequestTimeout:  10 * time.Second,
	})
}

// Secret keys, as Kubernetes secrets name them.
const (
	secretAccessKeyID     = "accessKeyID"
	secretSecretAccessKey = "secretAccessKey"
	secretSessionToken    = "sessionToken"
	secretEndpoint        = "endpoint"
	secretRegion          = "region"
	secretPathStyle       = "pathStyle"
)

// credentials are the S3 credentials of a secret.
type credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// secretCredentials reads the credentials of a request's secrets: none at
// all (the AWS chain of whoever uses them), or both keys.
func secretCredentials(secrets map[string]string) (credentials, error) {
	c := credentials{
		AccessKeyID:     strings.TrimSpace(secrets[secretAccessKeyID]),
		SecretAccessKey: strings.TrimSpace(secrets[secretSecretAccessKey]),
		SessionToken:    strings.TrimSpace(secrets[secretSessionToken]),
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return credentials{}, fmt.Errorf("the secret must hold both %s and %s, or neither", secretAccessKeyID, secretSecretAccessKey)
	}
	if c.AccessKeyID == "" && c.SessionToken != "" {
		return credentials{}, fmt.Errorf("the secret holds %s without %s", secretSessionToken, secretAccessKeyID)
	}
	for _, v := range []string{c.AccessKeyID, c.SecretAccessKey, c.SessionToken} {
		if strings.ContainsAny(v, "\n\r\x00") {
			// Never quote the value: it is a secret.
			return credentials{}, fmt.Errorf("a credential in the secret holds a line break")
		}
	}
	return c, nil
}

// storeConfig resolves how to reach v's store: the volume's endpoint,
// region and URL style, else the secret's.
func storeConfig(v volume, secrets map[string]string) (StoreConfig, error) {
	creds, err := secretCredentials(secrets)
	if err != nil {
		return StoreConfig{}, err
	}
	c := StoreConfig{
		Endpoint: v.Endpoint, Region: v.Region,
		AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken,
	}
	if c.Endpoint == "" {
		c.Endpoint = strings.TrimSpace(secrets[secretEndpoint])
	}
	if c.Region == "" {
		c.Region = strings.TrimSpace(secrets[secretRegion])
	}
	ps := v.PathStyle
	if ps == "" {
		if ps, err = parseBool(secretPathStyle, secrets[secretPathStyle]); err != nil {
			return StoreConfig{}, err
		}
	}
	c.PathStyle = ps == "true"
	if err := checkEndpoint(c.Endpoint); err != nil {
		return StoreConfig{}, err
	}
	return c, nil
}
