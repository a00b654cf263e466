variable "project_id" {
  description = "GCP project to deploy into."
  type        = string
}

variable "region" {
  description = "Region for the bucket and the VM's subnet."
  type        = string
  default     = "europe-west1"
}

variable "zone" {
  description = "Zone for the worker VM."
  type        = string
  default     = "europe-west1-b"
}

variable "name" {
  description = "Prefix for every resource's name."
  type        = string
  default     = "fer"
}

variable "machine_type" {
  description = "Worker VM type (2 vCPU, no GPU is what the worker is sized for)."
  type        = string
  default     = "e2-standard-2"
}

variable "network" {
  description = "VPC network the worker joins."
  type        = string
  default     = "default"
}

variable "worker_http_port" {
  description = "Port of the worker's metrics, health and preview server."
  type        = number
  default     = 8000
}

variable "worker_http_allowed_cidrs" {
  description = "Source ranges allowed to reach the worker's HTTP port (your Prometheus, your office)."
  type        = list(string)
  default     = []
}

variable "fer_src" {
  description = "Git URL of this project, cloned by the VM's start-up script."
  type        = string
}

variable "fer_source" {
  description = "What the worker reads: a camera index, an RTSP/HTTP stream URL, or a file on the VM."
  type        = string
  default     = "0"
}

variable "tracking_uri" {
  description = "MLflow tracking server the worker pulls the champion from."
  type        = string
}

variable "http_token" {
  description = "Token required for the worker's preview and status endpoints."
  type        = string
  sensitive   = true
}

variable "artifact_retention_days" {
  description = "Days after which non-current object versions in the bucket are deleted."
  type        = number
  default     = 90
}

variable "cameras" {
  description = "The fleet: one worker per camera, camera name => stream URL (RTSP/HTTP). Empty = no fleet."
  type        = map(string)
  default     = {}
}

variable "fleet_zones" {
  description = "Zones of the region the fleet's workers spread over."
  type        = list(string)
  default     = []
}
