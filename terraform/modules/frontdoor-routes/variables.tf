variable "routes_file" {
  description = "Path of the front door's routing table (shared/frontdoor/routes.json): the one file the local front door compiles in and the load balancer's URL map is built from."
  type        = string
  validation {
    condition     = endswith(var.routes_file, "routes.json")
    error_message = "routes_file must be shared/frontdoor/routes.json (the URL map keeps no routing table of its own)."
  }
}
