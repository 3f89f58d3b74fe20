package httpd

import "net/http"

// limitsView is GET /limits: the bounds in force, so that the page can
// state them and follow a SIGHUP without being rebuilt.
type limitsView struct {
	DefaultDays int `json:"default-days"`
	MaxDays     int `json:"max-days"`
	MaxUsage    int `json:"max-usage"`
}

// serveLimits is GET /limits.
func (a *API) serveLimits(w http.ResponseWriter, r *http.Request) {
	l := a.Limits()
	writeJSON(w, http.StatusOK, limitsView{l.DefaultDays, l.MaxDays, l.MaxUsage})
}
