-- wrk script: POST /oauth/device_authorization for latchkey-cli (bench/cpu_per_request.sh).
wrk.method = "POST"
wrk.body = "client_id=latchkey-cli"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
