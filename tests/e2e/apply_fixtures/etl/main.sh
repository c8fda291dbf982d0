echo "hello $TARGET from job $JOB_ID $1"
