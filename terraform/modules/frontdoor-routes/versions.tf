terraform {
  # No provider: this module only reads shared/frontdoor/routes.json and computes, so the
  # tests can evaluate it with `terraform console` without downloading anything.
  required_version = ">= 1.6.0"
}
