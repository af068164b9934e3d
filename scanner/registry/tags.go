package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// tagsPageSize is what we ask per page; ECR rejects n > 1000.
const tagsPageSize = 1000

// maxTagPages stops a registry whose pagination never ends from holding a worker forever.
const maxTagPages = 10000

// ListTags returns every tag of repo (e.g. "ghcr.io/org/app"), sorted and without duplicates.
// It follows Link headers (RFC 5988, as the distribution spec prescribes) and, for registries
// that cut a page at n without a Link header (go-containerregistry's own registry does), keeps
// asking with last=<final tag of the page> until a page is short or brings nothing new.
// Errors are sanitised.
func (c *Client) ListTags(ctx context.Context, repo string) ([]string, error) {
	tags, err := c.listTags(ctx, repo)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("list tags of %s: %w", repo, err))
	}
	return tags, nil
}

type tagsPage struct {
	Tags []string `json:"tags"`
}

func (c *Client) listTags(ctx context.Context, repoStr string) ([]string, error) {
	repo, err := name.NewRepository(repoStr, c.NameOptions(repoStr)...)
	if err != nil {
		return nil, fmt.Errorf("invalid repository: %w", err)
	}
	auth, err := authn.Resolve(ctx, c.opts.Keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("resolving credentials: %w", err)
	}
	// transport.NewWithContext pings, negotiates basic/bearer auth and the scheme, all through
	// our limiting transport.
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth,
		transport.NewUserAgent(c.transport, c.opts.UserAgent), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: rt, CheckRedirect: sameHostRedirect}

	first := url.URL{
		Scheme:   repo.Scheme(),
		Host:     repo.RegistryStr(),
		Path:     "/v2/" + repo.RepositoryStr() + "/tags/list",
		RawQuery: "n=" + strconv.Itoa(tagsPageSize),
	}
	seen := map[string]bool{}
	var all []string
	next := first
	ourLast := "" // set only when we paginate by last= ourselves
	for page := 0; ; page++ {
		if page >= maxTagPages {
			return nil, fmt.Errorf("tag list did not end after %d pages", maxTagPages)
		}
		tags, link, err := fetchTagsPage(ctx, client, next)
		if err != nil {
			return nil, err
		}
		added := 0
		for _, t := range tags {
			// Registries return tags in lexical order; anything not after our "last" is the
			// registry repeating itself (ggcr's registry restarts from the top at the end).
			if ourLast != "" && t <= ourLast {
				continue
			}
			if !seen[t] {
				seen[t] = true
				all = append(all, t)
				added++
			}
		}
		switch {
		case link != nil:
			if link.Host != first.Host {
				return nil, errors.New("pagination link points to another host; refusing to follow")
			}
			link.Scheme = first.Scheme // the auth transport picks the real scheme
			next = *link
			ourLast = ""
		case len(tags) >= tagsPageSize && added > 0:
			q := url.Values{}
			q.Set("n", strconv.Itoa(tagsPageSize))
			ourLast = tags[len(tags)-1]
			q.Set("last", ourLast)
			next = first
			next.RawQuery = q.Encode()
		default:
			sort.Strings(all)
			return all, nil
		}
	}
}

func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("too many redirects")
	}
	if len(via) > 0 && req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
	}
	return nil
}

func fetchTagsPage(ctx context.Context, client *http.Client, u url.URL) ([]string, *url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, nil, err
	}
	var page tagsPage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page); err != nil {
		return nil, nil, fmt.Errorf("decoding tag list: %w", err)
	}
	link, err := nextLink(resp.Header.Values("Link"), &u)
	if err != nil {
		return nil, nil, err
	}
	return page.Tags, link, nil
}

// nextLink extracts the rel="next" target of Link headers, resolved against the request URL.
func nextLink(values []string, base *url.URL) (*url.URL, error) {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.Index(part, ">")
			if end < 0 {
				return nil, errors.New("malformed Link header")
			}
			target, params := part[1:end], part[end+1:]
			if !strings.Contains(strings.ToLower(params), `rel="next"`) && !strings.Contains(strings.ToLower(params), "rel=next") {
				continue
			}
			u, err := url.Parse(target)
			if err != nil {
				return nil, errors.New("malformed Link header URL")
			}
			return base.ResolveReference(u), nil
		}
	}
	return nil, nil
}

// TagFilter selects tags, e.g. to decide which tags of a repository to watch. All conditions
// must hold: Include (any matches; empty = all), not Exclude (none matches), Semver constraint.
// Regexps use Go syntax and are unanchored: write ^...$ for a whole-tag match.
type TagFilter struct {
	// Include keeps a tag when any of these regexps matches; empty keeps all.
	Include []string
	// Exclude drops a tag when any of these regexps matches.
	Exclude []string
	// Semver is a Masterminds semver v3 constraint (e.g. ">= 1.2, < 2"); tags that do not parse
	// as versions (a leading "v" is fine) are dropped when it is set.
	Semver string
	// Latest keeps only the newest N tags after the other filters; 0 keeps all.
	Latest int
}

// FilterTags applies f to tags and returns the survivors newest first: by semantic version when
// f.Semver is set or every surviving tag parses as a version, otherwise in descending lexical
// order. Ties between equal versions (1.2 vs v1.2.0) break lexically so the output is stable.
// Duplicates are removed. An invalid regexp, constraint or negative Latest is an error.
func FilterTags(tags []string, f TagFilter) ([]string, error) {
	compile := func(kind string, exprs []string) ([]*regexp.Regexp, error) {
		var out []*regexp.Regexp
		for _, e := range exprs {
			re, err := regexp.Compile(e)
			if err != nil {
				return nil, fmt.Errorf("invalid %s pattern %q: %w", kind, e, err)
			}
			out = append(out, re)
		}
		return out, nil
	}
	incl, err := compile("include", f.Include)
	if err != nil {
		return nil, err
	}
	excl, err := compile("exclude", f.Exclude)
	if err != nil {
		return nil, err
	}
	var constraint *semver.Constraints
	if strings.TrimSpace(f.Semver) != "" {
		constraint, err = semver.NewConstraint(f.Semver)
		if err != nil {
			return nil, fmt.Errorf("invalid semver constraint %q: %w", f.Semver, err)
		}
	}
	if f.Latest < 0 {
		return nil, fmt.Errorf("invalid latest count %d: must be >= 0", f.Latest)
	}

	matchAny := func(res []*regexp.Regexp, s string) bool {
		for _, re := range res {
			if re.MatchString(s) {
				return true
			}
		}
		return false
	}

	type entry struct {
		tag string
		ver *semver.Version
	}
	var kept []entry
	seen := map[string]bool{}
	allParse := true
	for _, t := range tags {
		if seen[t] {
			continue
		}
		seen[t] = true
		if len(incl) > 0 && !matchAny(incl, t) {
			continue
		}
		if matchAny(excl, t) {
			continue
		}
		v, verr := semver.NewVersion(t)
		if constraint != nil {
			if verr != nil || !constraint.Check(v) {
				continue
			}
		}
		if verr != nil {
			allParse = false
			v = nil
		}
		kept = append(kept, entry{tag: t, ver: v})
	}

	bySemver := constraint != nil || (allParse && len(kept) > 0)
	sort.SliceStable(kept, func(i, j int) bool {
		if bySemver {
			if c := kept[i].ver.Compare(kept[j].ver); c != 0 {
				return c > 0
			}
		}
		return kept[i].tag > kept[j].tag
	})
	if f.Latest > 0 && len(kept) > f.Latest {
		kept = kept[:f.Latest]
	}
	out := make([]string, 0, len(kept))
	for _, e := range kept {
		out = append(out, e.tag)
	}
	return out, nil
}
