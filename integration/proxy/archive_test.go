package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// archiveEnv is versitygw with the proxy in front and a client of each.
type archiveEnv struct {
	px     *Proxy
	c      *s3.Client // through the proxy
	direct *s3.Client // straight to versitygw
	ctx    context.Context
}

func startArchiveEnv(t *testing.T, buckets ...string) *archiveEnv {
	t.Helper()
	srv, err := harness.StartServer(t.TempDir() + "/data")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	px, err := Start(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	e := &archiveEnv{px: px, c: harness.Client(px.URL), direct: harness.Client(srv.Endpoint), ctx: context.Background()}
	for _, b := range buckets {
		if err := harness.CreateBucket(e.ctx, e.direct, b); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *archiveEnv) put(t *testing.T, bucket, key string, data []byte, class types.StorageClass) {
	t.Helper()
	_, err := e.c.PutObject(e.ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(data), StorageClass: class})
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func (e *archiveEnv) head(t *testing.T, bucket, key string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := e.c.HeadObject(e.ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("head %s/%s: %v", bucket, key, err)
	}
	return out
}

func (e *archiveEnv) get(bucket, key string) ([]byte, *s3.GetObjectOutput, error) {
	out, err := e.c.GetObject(e.ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return b, out, err
}

// restore asks for a restore and returns the HTTP status of the answer.
func (e *archiveEnv) restore(bucket, key string, days int32) (int, error) {
	out, err := e.c.RestoreObject(e.ctx, &s3.RestoreObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		RestoreRequest: &types.RestoreRequest{Days: aws.Int32(days),
			GlacierJobParameters: &types.GlacierJobParameters{Tier: types.TierStandard}}})
	if err != nil {
		return statusOf(err), err
	}
	raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response)
	if !ok {
		return 0, fmt.Errorf("no raw response")
	}
	return raw.StatusCode, nil
}

func (e *archiveEnv) list(t *testing.T, in *s3.ListObjectsV2Input) *s3.ListObjectsV2Output {
	t.Helper()
	out, err := e.c.ListObjectsV2(e.ctx, in)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return out
}

func statusOf(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// wantAPIError checks err's S3 error code and HTTP status.
func wantAPIError(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("%s: got %v, want API error %s", what, err, code)
	}
	if ae.ErrorCode() != code || statusOf(err) != status {
		t.Fatalf("%s: got %s (HTTP %d), want %s (HTTP %d): %v", what, ae.ErrorCode(), statusOf(err), code, status, err)
	}
}

func wantArchivedGet(t *testing.T, e *archiveEnv, bucket, key, class string) {
	t.Helper()
	_, _, err := e.get(bucket, key)
	wantAPIError(t, "get "+key, err, "InvalidObjectState", http.StatusForbidden)
	var ios *types.InvalidObjectState
	if !errors.As(err, &ios) {
		t.Fatalf("get %s: %T is not *types.InvalidObjectState", key, err)
	}
	if string(ios.StorageClass) != class {
		t.Fatalf("get %s: InvalidObjectState.StorageClass = %q, want %q", key, ios.StorageClass, class)
	}
}

func contentsByKey(out *s3.ListObjectsV2Output) map[string]types.Object {
	m := map[string]types.Object{}
	for _, o := range out.Contents {
		m[aws.ToString(o.Key)] = o
	}
	return m
}

// TestArchiveRestoreCycle walks a GLACIER object through restore, read,
// extension and expiry.
func TestArchiveRestoreCycle(t *testing.T) {
	e := startArchiveEnv(t, "arch")
	data := []byte("frozen bytes, readable only once restored")
	e.put(t, "arch", "cold", data, types.StorageClassGlacier)
	e.put(t, "arch", "warm", []byte("warm"), "")

	h := e.head(t, "arch", "cold")
	if h.StorageClass != types.StorageClassGlacier || h.Restore != nil {
		t.Fatalf("head cold: class %q restore %v, want GLACIER and no restore", h.StorageClass, aws.ToString(h.Restore))
	}
	if aws.ToInt64(h.ContentLength) != int64(len(data)) {
		t.Fatalf("head cold: length %d", aws.ToInt64(h.ContentLength))
	}
	wantArchivedGet(t, e, "arch", "cold", "GLACIER")
	if b, _, err := e.get("arch", "warm"); err != nil || string(b) != "warm" {
		t.Fatalf("get warm: %q, %v", b, err)
	}

	l := contentsByKey(e.list(t, &s3.ListObjectsV2Input{Bucket: aws.String("arch")}))
	if l["cold"].StorageClass != types.ObjectStorageClassGlacier || l["warm"].StorageClass != types.ObjectStorageClassStandard {
		t.Fatalf("list classes: cold %q warm %q", l["cold"].StorageClass, l["warm"].StorageClass)
	}
	if l["cold"].RestoreStatus != nil {
		t.Fatalf("list without the optional attribute has RestoreStatus")
	}

	// Start a restore; a second one conflicts.
	if st, err := e.restore("arch", "cold", 2); err != nil || st != http.StatusAccepted {
		t.Fatalf("restore: %d, %v; want 202", st, err)
	}
	_, err := e.restore("arch", "cold", 2)
	wantAPIError(t, "second restore", err, "RestoreAlreadyInProgress", http.StatusConflict)
	if n := e.px.RestoreRequests(); n != 2 {
		t.Fatalf("RestoreRequests = %d, want 2", n)
	}
	h = e.head(t, "arch", "cold")
	if got := aws.ToString(h.Restore); got != `ongoing-request="true"` || h.StorageClass != types.StorageClassGlacier {
		t.Fatalf("head during restore: restore %q class %q", got, h.StorageClass)
	}
	wantArchivedGet(t, e, "arch", "cold", "GLACIER")

	withStatus := &s3.ListObjectsV2Input{Bucket: aws.String("arch"),
		OptionalObjectAttributes: []types.OptionalObjectAttributes{types.OptionalObjectAttributesRestoreStatus}}
	l = contentsByKey(e.list(t, withStatus))
	if rs := l["cold"].RestoreStatus; rs == nil || !aws.ToBool(rs.IsRestoreInProgress) || rs.RestoreExpiryDate != nil {
		t.Fatalf("list during restore: RestoreStatus %+v", rs)
	}
	if l["warm"].RestoreStatus != nil {
		t.Fatalf("warm has a RestoreStatus")
	}

	// The restore completes.
	expiry := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	e.px.FinishRestore("arch", "cold", expiry)
	h = e.head(t, "arch", "cold")
	want := `ongoing-request="false", expiry-date="` + expiry.Format(http.TimeFormat) + `"`
	if got := aws.ToString(h.Restore); got != want || h.StorageClass != types.StorageClassGlacier {
		t.Fatalf("head after restore: restore %q class %q, want %q GLACIER", got, h.StorageClass, want)
	}
	b, out, err := e.get("arch", "cold")
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("get restored: %q, %v", b, err)
	}
	if aws.ToString(out.Restore) != want || out.StorageClass != types.StorageClassGlacier {
		t.Fatalf("get restored: restore %q class %q", aws.ToString(out.Restore), out.StorageClass)
	}
	l = contentsByKey(e.list(t, withStatus))
	if rs := l["cold"].RestoreStatus; rs == nil || aws.ToBool(rs.IsRestoreInProgress) || !aws.ToTime(rs.RestoreExpiryDate).Equal(expiry) {
		t.Fatalf("list after restore: RestoreStatus %+v", rs)
	}

	// Restoring a restored object extends it: 200.
	before := time.Now()
	if st, err := e.restore("arch", "cold", 5); err != nil || st != http.StatusOK {
		t.Fatalf("restore of a restored object: %d, %v; want 200", st, err)
	}
	h = e.head(t, "arch", "cold")
	exp, ok := strings.CutPrefix(aws.ToString(h.Restore), `ongoing-request="false", expiry-date="`)
	if !ok {
		t.Fatalf("head after extension: %q", aws.ToString(h.Restore))
	}
	got, err := time.Parse(http.TimeFormat, strings.TrimSuffix(exp, `"`))
	if err != nil || got.Before(before.Add(5*24*time.Hour).Add(-time.Second)) || got.After(time.Now().Add(5*24*time.Hour)) {
		t.Fatalf("extended expiry %v (%v), want now+5 days", got, err)
	}

	// The restored copy expires: archived again.
	e.px.ExpireRestore("arch", "cold")
	if h := e.head(t, "arch", "cold"); h.Restore != nil {
		t.Fatalf("head after expiry: restore %q", aws.ToString(h.Restore))
	}
	wantArchivedGet(t, e, "arch", "cold", "GLACIER")
	if st, err := e.restore("arch", "cold", 1); err != nil || st != http.StatusAccepted {
		t.Fatalf("restore after expiry: %d, %v; want 202", st, err)
	}

	// Overwriting with a plain PUT makes it STANDARD again.
	e.put(t, "arch", "cold", []byte("new"), "")
	if b, _, err := e.get("arch", "cold"); err != nil || string(b) != "new" {
		t.Fatalf("get after overwrite: %q, %v", b, err)
	}
	if h := e.head(t, "arch", "cold"); h.Restore != nil {
		t.Fatalf("overwritten object still has a restore: %q", aws.ToString(h.Restore))
	}
}

// TestArchiveClasses covers lifecycle transitions, readable classes and
// RestoreObject's refusals.
func TestArchiveClasses(t *testing.T) {
	e := startArchiveEnv(t, "cls")
	e.put(t, "cls", "later", []byte("later"), "")
	e.put(t, "cls", "ir", []byte("instant"), types.StorageClassGlacierIr)
	e.put(t, "cls", "ia", []byte("infrequent"), types.StorageClassStandardIa)
	e.put(t, "cls", "deep", []byte("deep"), types.StorageClassDeepArchive)

	if b, _, err := e.get("cls", "later"); err != nil || string(b) != "later" {
		t.Fatalf("get before transition: %q, %v", b, err)
	}
	e.px.Archive("cls", "later", "DEEP_ARCHIVE")
	wantArchivedGet(t, e, "cls", "later", "DEEP_ARCHIVE")
	if h := e.head(t, "cls", "later"); h.StorageClass != types.StorageClassDeepArchive {
		t.Fatalf("head after transition: %q", h.StorageClass)
	}
	wantArchivedGet(t, e, "cls", "deep", "DEEP_ARCHIVE")

	for key, class := range map[string]types.StorageClass{"ir": types.StorageClassGlacierIr, "ia": types.StorageClassStandardIa} {
		b, out, err := e.get("cls", key)
		if err != nil || len(b) == 0 || out.StorageClass != class || out.Restore != nil {
			t.Fatalf("get %s: %q, %v, class %q", key, b, err, out.StorageClass)
		}
		_, err = e.restore("cls", key, 1)
		wantAPIError(t, "restore "+key, err, "InvalidObjectState", http.StatusForbidden)
	}
	_, err := e.restore("cls", "no-such-key", 1)
	wantAPIError(t, "restore untracked", err, "InvalidObjectState", http.StatusForbidden)
	_, err = e.restore("cls", "deep", 0)
	wantAPIError(t, "restore Days=0", err, "MalformedXML", http.StatusBadRequest)
	if got := e.px.StorageClass("cls", "ir"); got != "GLACIER_IR" {
		t.Fatalf("StorageClass(ir) = %q", got)
	}

	// A restore completes by itself after the restore delay.
	e.px.SetRestoreDelay(150 * time.Millisecond)
	start := time.Now()
	if st, err := e.restore("cls", "deep", 1); err != nil || st != http.StatusAccepted {
		t.Fatalf("restore deep: %d, %v", st, err)
	}
	if h := e.head(t, "cls", "deep"); aws.ToString(h.Restore) != `ongoing-request="true"` {
		t.Fatalf("head right after restore: %q", aws.ToString(h.Restore))
	}
	time.Sleep(200 * time.Millisecond)
	h := e.head(t, "cls", "deep")
	exp, ok := strings.CutPrefix(aws.ToString(h.Restore), `ongoing-request="false", expiry-date="`)
	if !ok {
		t.Fatalf("head after the restore delay: %q", aws.ToString(h.Restore))
	}
	got, err := time.Parse(http.TimeFormat, strings.TrimSuffix(exp, `"`))
	if err != nil || got.Before(start.Add(24*time.Hour).Add(-time.Second)) || got.After(time.Now().Add(24*time.Hour+time.Second)) {
		t.Fatalf("expiry %v (%v), want about a day after the restore", got, err)
	}
	if b, _, err := e.get("cls", "deep"); err != nil || string(b) != "deep" {
		t.Fatalf("get deep after restore: %q, %v", b, err)
	}

	// Other S3 calls on the archived object still reach the server.
	if _, err := e.c.DeleteObject(e.ctx, &s3.DeleteObjectInput{Bucket: aws.String("cls"), Key: aws.String("later")}); err != nil {
		t.Fatal(err)
	}
	if got := e.px.StorageClass("cls", "later"); got != "" {
		t.Fatalf("deleted object still tracked as %q", got)
	}
}

// TestArchiveMultipartAndCopy: CreateMultipartUpload's class applies at
// completion; an archived object cannot be a copy source until restored.
func TestArchiveMultipartAndCopy(t *testing.T) {
	e := startArchiveEnv(t, "mpu")
	part1 := bytes.Repeat([]byte("a"), 5<<20)
	part2 := []byte("tail")
	mu, err := e.c.CreateMultipartUpload(e.ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String("big"),
		StorageClass: types.StorageClassGlacier})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.px.StorageClass("mpu", "big"); got != "" {
		t.Fatalf("class applied before completion: %q", got)
	}
	var parts []types.CompletedPart
	for i, p := range [][]byte{part1, part2} {
		out, err := e.c.UploadPart(e.ctx, &s3.UploadPartInput{Bucket: aws.String("mpu"), Key: aws.String("big"), UploadId: mu.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = e.c.CompleteMultipartUpload(e.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String("big"),
		UploadId: mu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		t.Fatal(err)
	}
	h := e.head(t, "mpu", "big")
	if h.StorageClass != types.StorageClassGlacier || aws.ToInt64(h.ContentLength) != int64(len(part1)+len(part2)) {
		t.Fatalf("head of multipart object: class %q length %d", h.StorageClass, aws.ToInt64(h.ContentLength))
	}
	wantArchivedGet(t, e, "mpu", "big", "GLACIER")

	copyIn := &s3.CopyObjectInput{Bucket: aws.String("mpu"), Key: aws.String("copy"), CopySource: aws.String("mpu/big")}
	_, err = e.c.CopyObject(e.ctx, copyIn)
	wantAPIError(t, "copy from archived", err, "InvalidObjectState", http.StatusForbidden)

	// Restored, the object reads whole (streamed through the proxy) and copies.
	e.px.FinishRestore("mpu", "big", time.Now().Add(time.Hour))
	b, _, err := e.get("mpu", "big")
	if err != nil || !bytes.Equal(b, append(append([]byte{}, part1...), part2...)) {
		t.Fatalf("get restored multipart object: %d bytes, %v", len(b), err)
	}
	if _, err := e.c.CopyObject(e.ctx, copyIn); err != nil {
		t.Fatalf("copy from restored: %v", err)
	}
	if h := e.head(t, "mpu", "copy"); h.Restore != nil || e.px.StorageClass("mpu", "copy") != "" {
		t.Fatalf("copy without a class should be STANDARD: %q %q", h.StorageClass, aws.ToString(h.Restore))
	}
}

// TestInjectListing: injected keys show as objects and common prefixes.
func TestInjectListing(t *testing.T) {
	e := startArchiveEnv(t, "inj")
	for _, k := range []string{"clash/a", "clash/b", "dir/real", "top"} {
		e.put(t, "inj", k, []byte(k), "")
	}
	long := strings.Repeat("n", 300)
	injected := []string{"a//b", "../x", "dir/./y", long, "clash", "top"}
	e.px.InjectListing("inj", injected)

	out := e.list(t, &s3.ListObjectsV2Input{Bucket: aws.String("inj")})
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	want := []string{"../x", "a//b", "clash", "clash/a", "clash/b", "dir/./y", "dir/real", long, "top"}
	if strings.Join(keys, "|") != strings.Join(want, "|") || aws.ToInt32(out.KeyCount) != int32(len(want)) {
		t.Fatalf("flat listing: %q (KeyCount %d), want %q", keys, aws.ToInt32(out.KeyCount), want)
	}
	inj := contentsByKey(out)["a//b"]
	if aws.ToInt64(inj.Size) != 0 || aws.ToString(inj.ETag) != emptyETag || inj.StorageClass != types.ObjectStorageClassStandard || inj.LastModified == nil {
		t.Fatalf("injected entry: %+v", inj)
	}

	type page struct{ objects, prefixes []string }
	listDelim := func(prefix string) page {
		out := e.list(t, &s3.ListObjectsV2Input{Bucket: aws.String("inj"), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
		var p page
		for _, o := range out.Contents {
			p.objects = append(p.objects, aws.ToString(o.Key))
		}
		for _, c := range out.CommonPrefixes {
			p.prefixes = append(p.prefixes, aws.ToString(c.Prefix))
		}
		if int(aws.ToInt32(out.KeyCount)) != len(p.objects)+len(p.prefixes) {
			t.Fatalf("prefix %q: KeyCount %d for %v", prefix, aws.ToInt32(out.KeyCount), p)
		}
		return p
	}
	for _, c := range []struct {
		prefix            string
		objects, prefixes []string
	}{
		{"", []string{"clash", long, "top"}, []string{"../", "a/", "clash/", "dir/"}},
		{"dir/", []string{"dir/real"}, []string{"dir/./"}},
		{"a/", nil, []string{"a//"}},
		{"a//", []string{"a//b"}, nil},
		{"clash/", []string{"clash/a", "clash/b"}, nil},
		{"zzz", nil, nil},
	} {
		p := listDelim(c.prefix)
		if strings.Join(p.objects, "|") != strings.Join(c.objects, "|") || strings.Join(p.prefixes, "|") != strings.Join(c.prefixes, "|") {
			t.Errorf("prefix %q: objects %q prefixes %q, want %q %q", c.prefix, p.objects, p.prefixes, c.objects, c.prefixes)
		}
	}

	// start-after applies to injected keys too.
	out = e.list(t, &s3.ListObjectsV2Input{Bucket: aws.String("inj"), StartAfter: aws.String("dir/real")})
	keys = keys[:0]
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if strings.Join(keys, "|") != long+"|top" {
		t.Fatalf("start-after: %q", keys)
	}

	e.px.InjectListing("inj", nil)
	if n := len(e.list(t, &s3.ListObjectsV2Input{Bucket: aws.String("inj")}).Contents); n != 4 {
		t.Fatalf("after removing injected keys: %d objects", n)
	}
}

// TestArchiveListingPagination: a 1,500-key listing pages correctly
// through the rewrite, with tracked classes and injected keys in place.
func TestArchiveListingPagination(t *testing.T) {
	e := startArchiveEnv(t, "many")
	const n = 1500
	var want []string
	keysCh := make(chan string)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keysCh {
				if err := harness.Put(e.ctx, e.direct, "many", k, []byte(k)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		k := fmt.Sprintf("k%04d", i)
		want = append(want, k)
		keysCh <- k
	}
	close(keysCh)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.px.Archive("many", "k0750", "GLACIER")
	e.px.Archive("many", "k1400", "DEEP_ARCHIVE")
	injected := []string{"a-first", "k0500x", "k0999x", "k1499z", "zz-last"}
	e.px.InjectListing("many", injected)
	want = append(want, injected...)
	sort.Strings(want)

	e.px.Reset()
	var got []string
	classes := map[string]types.ObjectStorageClass{}
	pages := 0
	pg := s3.NewListObjectsV2Paginator(e.c, &s3.ListObjectsV2Input{Bucket: aws.String("many")})
	for pg.HasMorePages() {
		out, err := pg.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		var page []string
		for _, o := range out.Contents {
			page = append(page, aws.ToString(o.Key))
			classes[aws.ToString(o.Key)] = o.StorageClass
		}
		if !sort.StringsAreSorted(page) {
			t.Fatalf("page %d is not sorted", pages)
		}
		got = append(got, page...)
	}
	if pages < 2 || e.px.Stats().Lists != int64(pages) {
		t.Fatalf("%d pages, %d lists through the proxy; want at least 2 pages", pages, e.px.Stats().Lists)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("listed %d keys, want %d (duplicates or gaps)", len(got), len(want))
	}
	if classes["k0750"] != types.ObjectStorageClassGlacier || classes["k1400"] != types.ObjectStorageClassDeepArchive || classes["k0751"] != types.ObjectStorageClassStandard {
		t.Fatalf("classes: k0750 %q k1400 %q k0751 %q", classes["k0750"], classes["k1400"], classes["k0751"])
	}
}

// TestArchiveWriteClasses: the x-amz-storage-class of a successful
// PutObject, CopyObject or multipart upload sets what HEAD, GET and
// listings show (GLACIER archives the key, STANDARD_IA is shown as such,
// STANDARD or no class clears it); a write the server refused, or the
// proxy refused or failed, changes nothing, neither in the emulation nor
// on the server.
func TestArchiveWriteClasses(t *testing.T) {
	e := startArchiveEnv(t, "wrt")
	e.put(t, "wrt", "src", []byte("source bytes"), "")
	cp := func(key string, class types.StorageClass, directive types.MetadataDirective) error {
		_, err := e.c.CopyObject(e.ctx, &s3.CopyObjectInput{Bucket: aws.String("wrt"), Key: aws.String(key),
			CopySource: aws.String("wrt/src"), StorageClass: class, MetadataDirective: directive})
		return err
	}
	wantClass := func(key string, class types.StorageClass) {
		t.Helper()
		tracked := string(class)
		if class == types.StorageClassStandard {
			tracked = ""
		}
		if got := e.px.StorageClass("wrt", key); got != tracked {
			t.Fatalf("StorageClass(%s) = %q, want %q", key, got, class)
		}
		if h := e.head(t, "wrt", key); h.StorageClass != class {
			t.Fatalf("head %s: class %q, want %q", key, h.StorageClass, class)
		}
		if l := contentsByKey(e.list(t, &s3.ListObjectsV2Input{Bucket: aws.String("wrt")})); string(l[key].StorageClass) != string(class) {
			t.Fatalf("list %s: class %q, want %q", key, l[key].StorageClass, class)
		}
	}

	// CopyObject to GLACIER archives the destination, not the source.
	if err := cp("cold", types.StorageClassGlacier, ""); err != nil {
		t.Fatal(err)
	}
	wantClass("cold", types.StorageClassGlacier)
	wantArchivedGet(t, e, "wrt", "cold", "GLACIER")
	wantClass("src", types.StorageClassStandard)

	// STANDARD_IA is recorded and shown, and stays readable.
	if err := cp("ia", types.StorageClassStandardIa, ""); err != nil {
		t.Fatal(err)
	}
	wantClass("ia", types.StorageClassStandardIa)
	if b, out, err := e.get("wrt", "ia"); err != nil || string(b) != "source bytes" || out.StorageClass != types.StorageClassStandardIa {
		t.Fatalf("get ia: %q, %v", b, err)
	}

	// A copy with STANDARD, or with no class, makes the key ordinary again.
	if err := cp("cold", types.StorageClassStandard, ""); err != nil {
		t.Fatal(err)
	}
	wantClass("cold", types.StorageClassStandard)
	if err := cp("ia", "", ""); err != nil {
		t.Fatal(err)
	}
	wantClass("ia", types.StorageClassStandard)

	// versitygw refuses a copy onto the source without REPLACE: no change.
	err := cp("src", types.StorageClassDeepArchive, "")
	if err == nil || statusOf(err) != http.StatusBadRequest {
		t.Fatalf("copy onto itself with COPY: %v, want versitygw's 400", err)
	}
	wantClass("src", types.StorageClassStandard)
	if err := cp("src", types.StorageClassDeepArchive, types.MetadataDirectiveReplace); err != nil {
		t.Fatal(err)
	}
	wantClass("src", types.StorageClassDeepArchive)
	e.px.Archive("wrt", "src", "")

	// A refused or failed PutObject reaches neither the emulation nor the server.
	once := func(o *s3.Options) { o.RetryMaxAttempts = 1 }
	glacierPut := func(key string) error {
		_, err := e.c.PutObject(e.ctx, &s3.PutObjectInput{Bucket: aws.String("wrt"), Key: aws.String(key),
			Body: bytes.NewReader([]byte("never stored")), StorageClass: types.StorageClassGlacier}, once)
		return err
	}
	e.px.RefuseWrites(http.StatusServiceUnavailable)
	wantAPIError(t, "refused put", glacierPut("refused"), "SlowDown", http.StatusServiceUnavailable)
	e.px.RefuseWrites(0)
	e.px.SetFaults(Faults{ErrorRate: 1, ErrorStatus: http.StatusForbidden, Ops: []string{"PutObject"}})
	wantAPIError(t, "failed put", glacierPut("src"), "AccessDenied", http.StatusForbidden)
	e.px.SetFaults(Faults{})
	if got := e.px.StorageClass("wrt", "refused"); got != "" {
		t.Fatalf("refused put recorded class %q", got)
	}
	if _, err := e.direct.HeadObject(e.ctx, &s3.HeadObjectInput{Bucket: aws.String("wrt"), Key: aws.String("refused")}); statusOf(err) != http.StatusNotFound {
		t.Fatalf("refused put reached the server: head %v", err)
	}
	wantClass("src", types.StorageClassStandard)
	if b, _, err := e.get("wrt", "src"); err != nil || string(b) != "source bytes" {
		t.Fatalf("failed put changed src: %q, %v", b, err)
	}

	// A multipart upload's class applies at completion; its part bytes count.
	e.px.Reset()
	mu, err := e.c.CreateMultipartUpload(e.ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("wrt"), Key: aws.String("mp"),
		StorageClass: types.StorageClassStandardIa})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("m"), 5<<20)
	up, err := e.c.UploadPart(e.ctx, &s3.UploadPartInput{Bucket: aws.String("wrt"), Key: aws.String("mp"), UploadId: mu.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(part)})
	if err != nil {
		t.Fatal(err)
	}
	upc, err := e.c.UploadPartCopy(e.ctx, &s3.UploadPartCopyInput{Bucket: aws.String("wrt"), Key: aws.String("mp"), UploadId: mu.UploadId,
		PartNumber: aws.Int32(2), CopySource: aws.String("wrt/src")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.CompleteMultipartUpload(e.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("wrt"), Key: aws.String("mp"),
		UploadId: mu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{ETag: up.ETag, PartNumber: aws.Int32(1)}, {ETag: upc.CopyPartResult.ETag, PartNumber: aws.Int32(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	wantClass("mp", types.StorageClassStandardIa)
	st := e.px.Stats()
	if st.Puts != 1 || st.Copies != 1 || st.Completes != 1 || st.PutBytes != int64(len(part)) || e.px.UploadedBytes("mp") != int64(len(part)) {
		t.Fatalf("multipart counters: %+v, UploadedBytes(mp) %d; want one 5 MiB part, one copy, one completion", st, e.px.UploadedBytes("mp"))
	}
}
