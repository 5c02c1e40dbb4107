# GitLab's CODEOWNERS loop in Ruby, GitLab's own language: the baseline of
# `python -m benchmarks.codeowners` where Ruby is installed, and the real
# File.fnmatch? that tests/roulette/test_codeowners_ruby.py checks the matcher against.
#
# Usage: ruby benchmarks/gitlab_scan.rb FILE
#
# FILE holds one JSON object:
#   {"sections": [[[pattern, exclusion, [owner, ...]], ...], ...],  entries in file order,
#                                                                  patterns as written
#    "paths": [path, ...],                                          with or without "/"
#    "pairs": [[pattern, path], ...]}                               optional
# Writes one JSON object to stdout:
#   {"seconds": S,                  one scan of every path, monotonic clock; reading the
#                                   file and writing the answer are not timed
#    "owners": [[owner, ...], ...], each path's owners, sorted
#    "matches": [true, ...]}        for each pair: GitLab's path_matches?(pattern, path)
#
# The scan is Gitlab::CodeOwners::File#entries_for_path (ee/lib/gitlab/code_owners/file.rb),
# quickened as the Python scan of the benchmark is: per section, the exclusions are tried
# first (one that matches takes the section out for the path), then the entries last
# first, and the first match wins. Every test is GitLab's path_matches?:
# File.fnmatch?(normalize_pattern(pattern), "/" + path, FNM_DOTMATCH | FNM_PATHNAME).
require "json"

FNMATCH_FLAGS = File::FNM_DOTMATCH | File::FNM_PATHNAME

# GitLab's normalize_pattern, step by step.
def normalize_pattern(pattern)
  return "/**/*" if pattern == "*"

  pattern = pattern.sub(/\A\\#/, "#")
  pattern = pattern.gsub(/\\\s+/, " ")
  pattern = "/**/#{pattern}" unless pattern.start_with?("/")
  pattern = "#{pattern}**/*" if pattern.end_with?("/")
  pattern
end

def path_matches?(pattern, path)
  File.fnmatch?(pattern, path, FNMATCH_FLAGS)
end

# One section: its exclusions' patterns; its entries' patterns, last first, and their
# owners at the same index. The scan calls File.fnmatch? itself (no method in between) and
# looks through plain arrays of strings: the quickest way Ruby has, so that the baseline
# is not slowed by how it is written.
def quickened(entries)
  exclusions = entries.select { |_, exclusion, _| exclusion }.map { |pattern, _, _| normalize_pattern(pattern) }
  rules = entries.reject { |_, exclusion, _| exclusion }.reverse
  [exclusions, rules.map { |pattern, _, _| normalize_pattern(pattern) }, rules.map { |_, _, owners| owners }]
end

def owners_of(sections, path)
  owners = []
  sections.each do |exclusions, patterns, owners_at|
    next if exclusions.any? { |pattern| File.fnmatch?(pattern, path, FNMATCH_FLAGS) }

    found = patterns.index { |pattern| File.fnmatch?(pattern, path, FNMATCH_FLAGS) }
    owners.concat(owners_at[found]) if found
  end
  owners.uniq.sort
end

input = JSON.parse(File.read(ARGV.fetch(0)))
sections = input.fetch("sections").map { |entries| quickened(entries) }
paths = input.fetch("paths").map { |path| path.start_with?("/") ? path : "/#{path}" }

GC.start
start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
owners = paths.map { |path| owners_of(sections, path) }
seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start

matches = input.fetch("pairs", []).map do |pattern, path|
  path_matches?(normalize_pattern(pattern), path.start_with?("/") ? path : "/#{path}")
end
puts JSON.generate({ "seconds" => seconds, "owners" => owners, "matches" => matches })
