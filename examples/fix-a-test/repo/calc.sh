#!/bin/sh
# Adds two numbers. (It has a bug: test.sh catches it.)
echo $(( $1 - $2 ))
